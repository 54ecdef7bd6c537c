package lock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/internal/wait"
)

// Leader is an election's leader.
type Leader struct {
	// Value is what the leader campaigned with, such as its address.
	Value string
	// Term identifies the leadership: it is the fencing token of the
	// leader's grant, greater than every earlier leader's.
	Term uint64
}

// Election elects one leader among the candidates that campaign on a name,
// in the BucketElections bucket of the coordination node. Leadership is a
// grant of the election's key under a lease, with the guarantees of a Mutex
// (see the package doc): at most one leader at a time as decided by the
// node's Raft-replicated stream, a term (fencing token) that grows with
// every new leader, and a leader that crashes or is cut off loses
// leadership within a TTL.
//
// An Election is one candidate and is safe for concurrent use. Without
// WithSession, each leadership has a lease of its own, which Resign
// revokes.
type Election struct {
	h *holder
	b Backend
}

// NewElection returns a candidate in the election name on b's node. It
// does no I/O. An invalid name or TTL makes every method return
// ErrInvalidName or ErrInvalidTTL.
func NewElection(b Backend, name string, opts ...Option) *Election {
	return &Election{b: b, h: newHolder(b, name, electionPrefix+name, func(s *Session) *kvStore { return s.elections }, opts)}
}

// Campaign waits until this candidate is leader, with value as its Leader
// value, and returns its term. It waits and returns like Mutex.Lock: in
// line behind earlier candidates (across processes, by ticket), at once
// when leadership is confirmed, and a term only for a live leadership
// (else ErrLeaseLost); it returns the same errors.
func (e *Election) Campaign(ctx context.Context, value string) (uint64, error) {
	return e.h.tracedAcquire(ctx, "lock.Campaign", "election", []byte(value), true)
}

// Resign gives up leadership, conditionally on still having it, so that
// another candidate can take over at once. It returns ErrNotLeader (with
// ErrNotHeld) when this candidate is not the leader, or the errors of
// Mutex.Unlock.
func (e *Election) Resign(ctx context.Context) error {
	err := e.h.release(ctx)
	if errors.Is(err, ErrNotHeld) {
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	return err
}

// Term returns this candidate's term while it is leader, else 0.
func (e *Election) Term() uint64 { return e.h.token() }

// Done returns a channel that is closed when this candidate's leadership
// ends: on Resign, or when its lease is lost (once the keepalive noticed:
// see Valid). Without leadership it returns a closed channel.
func (e *Election) Done() <-chan struct{} { return e.h.done() }

// Deadline returns until when this candidate is surely leader (see
// Session.Deadline), or the zero time.
func (e *Election) Deadline() time.Time { return e.h.deadline() }

// Valid returns nil while this candidate is surely leader: its leadership's
// lease has not ended (Done is open) and its Deadline is ahead. Check it
// before acting as leader; see Mutex.Valid for what it does and does not
// guarantee. It returns ErrLeaseLost (with the cause) when the lease ended
// or its deadline passed, ErrNotLeader (with ErrNotHeld) without
// leadership, ErrInvalidName, or ErrInvalidTTL.
func (e *Election) Valid() error {
	err := e.h.valid()
	if errors.Is(err, ErrNotHeld) {
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	return err
}

// Leader returns the current leader, as read from the stream leader of the
// election's bucket. It is a recent view, not a linearizable one: a
// leadership can end right after the read.
//
// Leader returns ErrNoLeader, ErrInvalidName, ctx's error, or the node's.
func (e *Election) Leader(ctx context.Context) (Leader, error) {
	if !validName(e.h.name) {
		return Leader{}, fmt.Errorf("%w: %q", ErrInvalidName, e.h.name)
	}
	st, err := e.store(ctx)
	if err != nil {
		return Leader{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, e.h.cfg.opTimeout)
	defer cancel()
	en, err := st.last(ctx, e.h.key)
	if err != nil {
		return Leader{}, err
	}
	if en.free {
		return Leader{}, ErrNoLeader
	}
	return Leader{Value: string(en.value), Term: en.token}, nil
}

func (e *Election) store(ctx context.Context) (*kvStore, error) {
	node, err := e.b.Node(ctx)
	if err != nil {
		return nil, err
	}
	return newKVStore(node, coord.BucketElections), nil
}

// Observe returns a channel that receives the current leader, if there is
// one, and then every new leader (a new term), until ctx ends or the
// node's connection closes; then it is closed. Vacancies are not sent; a slow receiver sees only the latest
// leader. It is woken by a watch on the election's key, with a re-read at
// the leader's lease expiry (at most a TTL apart) for events the watch
// misses.
func (e *Election) Observe(ctx context.Context) <-chan Leader {
	ch := make(chan Leader)
	go e.observe(ctx, ch)
	return ch
}

func (e *Election) observe(ctx context.Context, ch chan<- Leader) {
	defer close(ch)
	if !validName(e.h.name) {
		return
	}
	st, err := e.store(ctx)
	if err != nil {
		return
	}
	var w *watch
	defer func() { w.stop() }()
	var last uint64
	for i := 0; ctx.Err() == nil && !st.nc.IsClosed(); i++ {
		if w == nil {
			if w, err = st.watch(ctx, e.h.key, true); err != nil {
				w = nil
				wait.Sleep(ctx, backoff(min(i, 8)))
				continue
			}
		}
		rctx, cancel := context.WithTimeout(ctx, e.h.cfg.opTimeout)
		en, err := st.last(rctx, e.h.key)
		cancel()
		if err != nil {
			wait.Sleep(ctx, backoff(min(i, 8)))
			continue
		}
		wait := e.h.cfg.ttl
		if !en.free {
			w.ignoring(en.attempt)
			if en.token != last {
				select {
				case ch <- Leader{Value: string(en.value), Term: en.token}:
					last = en.token
				case <-ctx.Done():
					return
				}
			}
			if !en.expires.IsZero() {
				wait = min(wait, max(time.Until(en.expires)+20*time.Millisecond, 20*time.Millisecond))
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-w.wake:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}
