package keylock

import (
	"context"
	"sync"
)

// Map is a set of per-key locks. The zero value is ready to use; it is safe
// for concurrent use.
type Map struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	ch   chan struct{} // holds a value while locked
	refs int           // holders and waiters
}

// Lock locks key, waiting until it is free or ctx ends. It returns the
// function that unlocks it, or ctx's error.
func (l *Map) Lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*entry{}
	}
	e := l.m[key]
	if e == nil {
		e = &entry{ch: make(chan struct{}, 1)}
		l.m[key] = e
	}
	e.refs++
	l.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; l.drop(key) }, nil
	case <-ctx.Done():
		l.drop(key)
		return nil, ctx.Err()
	}
}

// Len returns how many keys are locked or waited for.
func (l *Map) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// drop releases one reference and forgets an unused key.
func (l *Map) drop(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.m[key]; e != nil {
		if e.refs--; e.refs == 0 {
			delete(l.m, key)
		}
	}
}
