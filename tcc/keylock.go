package tcc

import (
	"context"
	"sync"
)

// keyLocks serializes the calls of one branch within this process, so that
// concurrent duplicates wait for the first instead of running the handler
// in parallel and conflicting at commit. It holds memory only for branches
// with a call in progress.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{} // holds a value while locked
	refs int
}

// lock locks key, waiting until ctx ends; it returns the unlock function.
func (l *keyLocks) lock(ctx context.Context, key string) (func(), error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*keyLock{}
	}
	kl := l.m[key]
	if kl == nil {
		kl = &keyLock{ch: make(chan struct{}, 1)}
		l.m[key] = kl
	}
	kl.refs++
	l.mu.Unlock()
	select {
	case kl.ch <- struct{}{}:
		return func() { <-kl.ch; l.drop(key) }, nil
	case <-ctx.Done():
		l.drop(key)
		return nil, ctxErr(ctx)
	}
}

func (l *keyLocks) drop(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if kl := l.m[key]; kl != nil {
		if kl.refs--; kl.refs == 0 {
			delete(l.m, key)
		}
	}
}
