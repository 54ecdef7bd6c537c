package lock

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/concordrpc/concord/coord"
)

// Session is a lease: a TTL, extended by a background keepalive, under
// which the session holds keys (locks and election leaderships). Keys carry
// the TTL themselves (JetStream per-message TTL), so a session that stops
// refreshing, because its process crashed, paused or was cut off, loses
// them within a TTL of its last successful keepalive, without anyone
// revoking them.
//
// The keepalive refreshes every held key each TTL/3 with a conditional
// write that expects the key's last sequence to be the session's own. The
// session is lost, Done is closed and Err returns an error wrapping
// ErrLeaseLost, as soon as a refresh is refused (the key expired and may
// have a new holder), no refresh succeeded before a key's deadline (see
// Deadline), or the connection to the node closed. A lost session stays
// lost; hold new keys with a new Session. It then releases what it may
// still hold, with conditional writes.
//
// A Session is safe for concurrent use. Close it to revoke its keys and stop
// the keepalive.
type Session struct {
	cfg       config
	node      *coord.Node
	locks     *kvStore
	elections *kvStore

	mu     sync.Mutex
	grants map[*grant]struct{}
	err    error         // why the session ended; nil while it lives
	done   chan struct{} // closed when the session ends

	stop      chan struct{} // closed by Close
	exited    chan struct{} // closed when the keepalive goroutine returns
	closeOnce sync.Once
	closeErr  error

	// Work left in the background by acquisitions that returned: watches
	// left (and stopped, by their last waiter) and tickets removed; Close
	// waits for it. closing (guarded by mu) is set before that wait, after
	// which work is no longer added to it.
	stops   sync.WaitGroup
	closing bool

	paused atomic.Bool // tests: the keepalive acts like a paused process

	// Waits of acquire that did not end by a watch event, counted for
	// tests: a watch that could not be created (acquire retries with
	// backoff), and wakes by the fallback timer at the holder's expiry.
	fallbacks struct{ watchFailed, timerWakes atomic.Int64 }

	unhook func() // unregisters the session from its node's Release
}

// NewSession returns a Session on b's node with the TTL of WithTTL, and
// starts its keepalive. It holds nothing yet. It waits for the node until
// ctx ends.
//
// NewSession returns ErrInvalidTTL, ErrLeaseLost when the node's connection
// is closed, or the Backend's error.
func NewSession(ctx context.Context, b Backend, opts ...Option) (*Session, error) {
	cfg := newConfig(opts)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	node, err := b.Node(ctx)
	if err != nil {
		return nil, err
	}
	return newSession(node, cfg)
}

func newSession(node *coord.Node, cfg config) (*Session, error) {
	nc := node.Conn()
	closed := nc.StatusChanged(nats.CLOSED)
	if nc.IsClosed() {
		nc.RemoveStatusListener(closed)
		return nil, fmt.Errorf("%w: connection to the coordination node is closed", ErrLeaseLost)
	}
	s := &Session{
		cfg:       cfg,
		node:      node,
		locks:     newKVStore(node, coord.BucketLocks),
		elections: newKVStore(node, coord.BucketElections),
		grants:    map[*grant]struct{}{},
		done:      make(chan struct{}),
		stop:      make(chan struct{}),
		exited:    make(chan struct{}),
	}
	s.unhook = node.OnRelease(func() { _ = s.Close() })
	go s.run(closed)
	return s, nil
}

// TTL returns the lease's time to live.
func (s *Session) TTL() time.Duration { return s.cfg.ttl }

// Done returns a channel that is closed when the session ends: lost, or
// closed.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns nil while the session lives, then an error wrapping
// ErrLeaseLost (with the cause) or ErrSessionClosed.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Deadline returns the earliest time until which every key the session
// holds is surely still its own, or the zero time when it holds nothing or
// has ended. It is the send time of the key's last acknowledged write plus
// the TTL, less 1% for clock-rate differences: the server expires a
// message a TTL after it stored it, which is after it was sent. Work
// protected by a lock should stop by then (Mutex.Valid checks it); fencing
// tokens protect writes that a pause carries past it once a newer token
// has reached the Guard.
func (s *Session) Deadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d time.Time
	for g := range s.grants {
		if d.IsZero() || g.deadline.Before(d) {
			d = g.deadline
		}
	}
	return d
}

// Close stops the keepalive and revokes every key the session holds, with
// conditional writes that leave alone keys that have meanwhile passed to
// another holder. Keys it cannot revoke (the node is unreachable) expire
// within a TTL. It then waits for what Lock and Campaign calls under the
// session left in the background when they returned: the watches they
// waited on stop within 2 s each, and their tickets are removed within
// the op timeout (WithOpTimeout) each, concurrently. Close is idempotent; it
// returns the first call's result: nil, or the revocations that failed.
// The node's Release (which a stopping App and coord.Node.Close call)
// closes every session on it.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		defer s.unhook()
		close(s.stop)
		<-s.exited
		gs := s.end(ErrSessionClosed)
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ttl)
		defer cancel()
		var errs []error
		for _, g := range gs {
			g.op.Lock()
			_, err := g.revoke(ctx)
			g.op.Unlock()
			if err != nil && !errors.Is(err, ErrNotHeld) {
				errs = append(errs, err)
			}
		}
		s.closeErr = errors.Join(errs...)
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		s.stops.Wait()
	})
	return s.closeErr
}

// stopWatch leaves w's shared watch without making the caller wait (see
// background): the last waiter to leave stops the watch, which can take
// up to 2 s (condkv.Watch.Stop waits that long for an ordered consumer
// whose reset is in its retry backoff, and for the deletion of its
// consumer), and an acquisition must return its grant at once, while the
// grant's deadline is still ahead.
func (s *Session) stopWatch(w *watch) {
	if w != nil {
		s.background(w.stop)
	}
}

// background runs f, work left by an acquisition (stopping a watch,
// removing a ticket), without making the caller wait. Close waits for it.
// Once Close has begun waiting, f runs before background returns; the
// caller's session is closed then, so it returns no grant.
func (s *Session) background(f func()) {
	s.mu.Lock()
	closing := s.closing
	if !closing {
		s.stops.Add(1)
	}
	s.mu.Unlock()
	if closing {
		f()
		return
	}
	go func() {
		defer s.stops.Done()
		f()
	}()
}

// leaseEnd returns until when a write sent at send keeps its key.
func (s *Session) leaseEnd(send time.Time) time.Time {
	return send.Add(s.cfg.ttl - s.cfg.ttl/100)
}

// alive returns nil while the session lives, else why it ended.
func (s *Session) alive() error { return s.Err() }

// end ends the session with err, unless it already ended, and returns the
// grants that were live.
func (s *Session) end(err error) []*grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil
	}
	s.err = err
	gs := slices.Collect(maps.Keys(s.grants))
	for _, g := range gs {
		g.ended = true
		close(g.done)
	}
	clear(s.grants)
	close(s.done)
	return gs
}

// lose ends the session with err and gives back, best effort, the keys it
// may still hold: conditional writes cannot take a key from a new holder.
func (s *Session) lose(err error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.opTimeout)
	defer cancel()
	for _, g := range s.end(err) {
		if f := s.cfg.events; f != nil {
			f(Event{Kind: EventLeaseLost, Lock: g.st.kind()})
		}
		g.op.Lock()
		_, _ = g.revoke(ctx)
		g.op.Unlock()
	}
}

// opCtx bounds one request by the op timeout and ctx.
func (s *Session) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.opTimeout)
}

// run is the keepalive: it refreshes every grant each TTL/3 (sooner after
// a failed round) and ends the session when a grant's deadline passes.
func (s *Session) run(closed chan nats.Status) {
	defer close(s.exited)
	defer s.node.Conn().RemoveStatusListener(closed)
	interval := s.cfg.ttl / 3
	next := time.Now().Add(interval)
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-closed:
			s.lose(fmt.Errorf("%w: connection to the coordination node closed", ErrLeaseLost))
			return
		case <-t.C:
		}
		if s.paused.Load() {
			t.Reset(10 * time.Millisecond)
			continue
		}
		now := time.Now()
		if key, ok := s.expired(now); ok {
			s.lose(fmt.Errorf("%w: no keepalive of %q succeeded before its deadline", ErrLeaseLost, key))
			return
		}
		if !now.Before(next) {
			ok, err := s.refreshAll()
			if err != nil {
				s.lose(err)
				return
			}
			next = time.Now().Add(interval)
			if !ok {
				next = time.Now().Add(interval / 4)
			}
		}
		wake := next
		if d := s.Deadline(); !d.IsZero() && d.Before(wake) {
			wake = d
		}
		t.Reset(max(time.Until(wake), time.Millisecond))
	}
}

// expired returns a grant's key whose deadline has passed.
func (s *Session) expired(now time.Time) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for g := range s.grants {
		if passed(now, g.deadline) {
			return g.key, true
		}
	}
	return "", false
}

// refreshAll refreshes every grant, concurrently, so that one slow key
// does not eat into the others' deadlines. ok is false if some refresh must
// be retried; err (wrapping ErrLeaseLost) means a grant is lost.
func (s *Session) refreshAll() (ok bool, err error) {
	s.mu.Lock()
	gs := slices.Collect(maps.Keys(s.grants))
	s.mu.Unlock()
	oks, errs := make([]bool, len(gs)), make([]error, len(gs))
	var wg sync.WaitGroup
	for i, g := range gs {
		wg.Go(func() { oks[i], errs[i] = g.refresh() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return false, err
	}
	return !slices.Contains(oks, false), nil
}

// newID returns a random attempt ID (128 bits).
func newID() string { return rand.Text() }
