package lock

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// holder is what Mutex and Election share: one key, held by at most one
// grant at a time, under a shared Session or a Session of its own per
// grant.
type holder struct {
	b      Backend
	key    string
	name   string // the Mutex's or Election's name, for spans
	cfg    config
	err    error                   // invalid name or options
	bucket func(*Session) *kvStore // the key's bucket
	sem    chan struct{}           // serializes acquire and release
	mu     sync.Mutex              // guards the fields below
	g      *grant                  // the current grant, or nil
	own    *Session                // the grant's own session, if any
	hint   uint64                  // sequence the key is expected free at
	c      contender               // its tickets' key
	closed chan struct{}           // closed; Done's answer without a grant
}

func newHolder(b Backend, name, key string, bucket func(*Session) *kvStore, opts []Option) *holder {
	h := &holder{b: b, key: key, name: name, cfg: newConfig(opts), bucket: bucket, sem: make(chan struct{}, 1), closed: make(chan struct{})}
	h.c.id = newID()
	close(h.closed)
	switch {
	case !validName(name):
		h.err = fmt.Errorf("%w: %q", ErrInvalidName, name)
	case h.cfg.session == nil:
		h.err = h.cfg.validate()
	}
	return h
}

func (h *holder) lockSem(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *holder) unlockSem() { <-h.sem }

// current returns the live grant, forgetting (and closing the session of)
// one that ended.
func (h *holder) current() *grant {
	h.mu.Lock()
	g, own := h.g, h.own
	if g == nil {
		h.mu.Unlock()
		return nil
	}
	if _, ended := g.state(); !ended {
		h.mu.Unlock()
		return g
	}
	h.g, h.own = nil, nil
	h.mu.Unlock()
	if own != nil {
		_ = own.Close()
	}
	return nil
}

// acquire takes the key with data, waiting if wait is set.
func (h *holder) acquire(ctx context.Context, data []byte, wait bool) (uint64, error) {
	if h.err != nil {
		return 0, h.err
	}
	if err := h.lockSem(ctx); err != nil {
		return 0, err
	}
	defer h.unlockSem()
	if h.current() != nil {
		return 0, ErrAlreadyHeld
	}
	s, own := h.cfg.session, (*Session)(nil)
	if s == nil {
		node, err := h.b.Node(ctx)
		if err != nil {
			return 0, err
		}
		if s, err = newSession(node, h.cfg); err != nil {
			return 0, err
		}
		own = s
	}
	var g *grant
	var err error
	start, waited := time.Now(), false
	if wait {
		g, err = s.acquire(ctx, h.bucket(s), h.key, data, &h.c, &h.hint, &waited)
	} else {
		g, err = s.acquireFree(ctx, h.bucket(s), h.key, data, &h.hint, false)
	}
	if err == nil {
		if h.cfg.hooks != nil && h.cfg.hooks.granted != nil {
			h.cfg.hooks.granted(s)
		}
		err = handOut(ctx, g)
	}
	if err != nil {
		if own != nil {
			_ = own.Close()
		}
		return 0, err
	}
	h.mu.Lock()
	h.g, h.own = g, own
	h.mu.Unlock()
	if f := h.cfg.events; f != nil {
		ev := Event{Kind: EventGranted, Lock: g.st.kind(), Waited: waited}
		if wait {
			ev.Wait = time.Since(start)
		}
		f(ev)
	}
	return g.token, nil
}

// handOut returns nil if g, just acquired, is live. A grant that ended, or
// whose deadline passed, before it could be returned (the process paused,
// or the keepalive failed) may be another holder's by now: handOut gives
// it back with a conditional write, as adopt does with a grant confirmed
// too late, and returns ErrLeaseLost with the cause.
func handOut(ctx context.Context, g *grant) error {
	err := g.live()
	if err == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.s.cfg.opTimeout)
	defer cancel()
	_, _ = g.release(rctx) // ErrNotHeld if it ended: the session revoked it
	return err
}

// release gives the key back. It returns ErrNotHeld (wrapped with the
// cause) if there is no grant or the key is no longer the grant's.
func (h *holder) release(ctx context.Context) error {
	if h.err != nil {
		return h.err
	}
	if err := h.lockSem(ctx); err != nil {
		return err
	}
	defer h.unlockSem()
	h.mu.Lock()
	g, own := h.g, h.own
	h.g, h.own = nil, nil
	h.mu.Unlock()
	if g == nil {
		return ErrNotHeld
	}
	seq, err := g.release(ctx)
	if err == nil && seq != 0 {
		h.hint = seq // our own release marker: the key is free at it
	}
	if own != nil {
		_ = own.Close() // holds nothing now; stops the keepalive
	}
	return err
}

// token returns the live grant's token, or 0. Unlike current it does not
// close the session of a grant that ended (Close can wait for watches to
// stop), so that Token never blocks.
func (h *holder) token() uint64 {
	h.mu.Lock()
	g := h.g
	h.mu.Unlock()
	if g == nil {
		return 0
	}
	if _, ended := g.state(); ended {
		return 0
	}
	return g.token
}

// valid returns nil while the current grant is surely held: it has not
// ended and its deadline is ahead.
func (h *holder) valid() error {
	if h.err != nil {
		return h.err
	}
	h.mu.Lock()
	g := h.g
	h.mu.Unlock()
	if g == nil {
		return ErrNotHeld
	}
	return g.live()
}

func (h *holder) done() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.g == nil {
		return h.closed
	}
	return h.g.done
}

func (h *holder) deadline() time.Time {
	h.mu.Lock()
	g := h.g
	h.mu.Unlock()
	if g == nil {
		return time.Time{}
	}
	d, _ := g.state()
	return d
}
