package lock

import (
	"context"
	"errors"
	"fmt"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/internal/wait"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// grant is a key the session holds.
type grant struct {
	s       *Session
	st      *kvStore
	key     string
	data    []byte
	attempt string // unique to this grant; written in every message of it
	served  uint64 // the order of the ticket the grant consumed, in its messages; 0 if none
	token   uint64 // the fencing token: the sequence of the grant's message

	op  sync.Mutex // serializes the grant's writes (keepalive, release)
	seq uint64     // sequence of the key's last message, ours; guarded by op

	// Guarded by s.mu.
	deadline time.Time // the grant is surely ours until then
	ended    bool
	released bool
	done     chan struct{} // closed when ended
}

// state returns the grant's deadline and whether it ended.
func (g *grant) state() (time.Time, bool) {
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	return g.deadline, g.ended
}

// live returns nil while the grant is surely held: it has not ended and
// its deadline is ahead. Otherwise it returns ErrLeaseLost with the cause,
// or ErrNotHeld if the grant was released.
func (g *grant) live() error {
	g.s.mu.Lock()
	deadline, ended, released, serr := g.deadline, g.ended, g.released, g.s.err
	g.s.mu.Unlock()
	switch {
	case released:
		return ErrNotHeld
	case ended && errors.Is(serr, ErrLeaseLost):
		return serr
	case ended:
		return fmt.Errorf("%w: the lease of %q ended: %w", ErrLeaseLost, g.key, serr)
	case passed(time.Now(), deadline):
		return fmt.Errorf("%w: the deadline of %q passed at %s", ErrLeaseLost, g.key, deadline.Format(time.RFC3339Nano))
	}
	return nil
}

// passed reports whether deadline has passed by either clock of the
// process: the monotonic one, which a step of the wall clock cannot move,
// or the wall clock, which goes on while the monotonic clock of a paused
// virtual machine may not (a function's process frozen between
// invocations, a suspended host). Either saying so ends a lease: a lease
// wrongly taken for lost costs a new acquisition, one wrongly taken for
// live could let two holders write.
func passed(now, deadline time.Time) bool {
	return !now.Before(deadline) || !now.Round(0).Before(deadline.Round(0))
}

// refresh extends the grant's key by a TTL with a write conditional on the
// key's last message being the grant's. ok is false when the outcome is
// unclear and the refresh should be retried soon.
func (g *grant) refresh() (ok bool, err error) {
	g.op.Lock()
	defer g.op.Unlock()
	deadline, ended := g.state()
	if ended {
		return true, nil
	}
	send := time.Now()
	if passed(send, deadline) {
		return false, fmt.Errorf("%w: no keepalive of %q succeeded before its deadline", ErrLeaseLost, g.key)
	}
	opDeadline := send.Add(g.s.cfg.opTimeout)
	if deadline.Before(opDeadline) {
		opDeadline = deadline
	}
	ctx, cancel := context.WithDeadline(context.Background(), opDeadline)
	defer cancel()
	seq, err := g.st.put(ctx, g.key, g.data, g.attempt, g.served, g.token, g.seq, g.s.cfg.ttl)
	switch {
	case err == nil:
		// An acknowledgement after the deadline does not count: the old
		// message may have expired first, and the server's expiry marker
		// (an unconditional rollup) may then remove this refresh.
		if passed(time.Now(), deadline) {
			return false, fmt.Errorf("%w: keepalive of %q acknowledged after its deadline", ErrLeaseLost, g.key)
		}
		g.seq = seq
		g.s.mu.Lock()
		if !g.ended {
			g.deadline = g.s.leaseEnd(send)
		}
		g.s.mu.Unlock()
		return true, nil
	case coord.IsConflict(err):
		e, rerr := g.st.last(ctx, g.key)
		if rerr != nil {
			return false, nil
		}
		if !e.free && e.attempt == g.attempt {
			// An earlier refresh whose answer was lost did commit. Its send
			// time is unknown, so the deadline stays.
			g.seq = e.seq
			return false, nil
		}
		if _, ended := g.state(); ended {
			return true, nil
		}
		return false, fmt.Errorf("%w: %q expired or was taken (last sequence %d)", ErrLeaseLost, g.key, e.seq)
	default:
		return false, nil
	}
}

// release ends the grant and frees its key with a conditional write. It
// returns the sequence of the release marker when the marker's write was
// acknowledged (0 otherwise): a hint for the next acquisition, which may
// expect the key free at it without reading first. It returns ErrNotHeld
// if the grant had already ended or the key is no longer the grant's.
func (g *grant) release(ctx context.Context) (uint64, error) {
	g.op.Lock()
	defer g.op.Unlock()
	s := g.s
	s.mu.Lock()
	ended, released, serr := g.ended, g.released, s.err
	if !ended {
		g.ended, g.released = true, true
		close(g.done)
		delete(s.grants, g)
	}
	s.mu.Unlock()
	switch {
	case released:
		return 0, ErrNotHeld
	case ended:
		return 0, fmt.Errorf("%w: %w", ErrNotHeld, serr)
	}
	return g.revoke(ctx)
}

// revoke frees the grant's key if it is still the grant's, retrying
// boundedly while the outcome is unclear. The caller holds g.op.
//
// It returns the sequence of its release marker only when the marker's
// write was acknowledged. An unclear write (a timeout: it may have
// committed) is resolved by reading the key, with a request bounded by the
// op timeout alone, since ctx may be what ended it: the key still ours
// means retry; anything else means the grant no longer holds the key,
// freed by our write or by expiry, and possibly taken since, so revoke
// reports success with no sequence. The key's current sequence is never a
// hint: it may be another holder's live grant, which an acquisition
// expecting it would overwrite.
func (g *grant) revoke(ctx context.Context) (uint64, error) {
	expect := g.seq
	unclear := false // a release write may have committed unseen
	var lastErr error
	for i := range 8 {
		if ctx.Err() != nil || i > 0 && !wait.Sleep(ctx, backoff(i)) {
			break
		}
		if g.st.nc.IsClosed() {
			lastErr = nats.ErrConnectionClosed
			break
		}
		pctx, cancel := g.s.opCtx(ctx)
		seq, err := g.st.release(pctx, g.key, g.served, expect)
		cancel()
		if h := g.s.cfg.hooks; h != nil && h.released != nil {
			seq, err = h.released(seq, err)
		}
		if err == nil {
			// The first in line for the key, if it waits in this
			// process, may write its grant expecting the key free at our
			// marker.
			g.st.hub.released(watchKey{stream: g.st.b.Stream(), key: g.key}, seq, g.served)
			return seq, nil
		}
		if !coord.IsRefused(err) {
			unclear = true
		} else if !coord.IsConflict(err) {
			lastErr = err
			continue
		}
		rctx, rcancel := g.s.opCtx(context.WithoutCancel(ctx))
		e, rerr := g.st.last(rctx, g.key)
		rcancel()
		switch {
		case rerr != nil:
			lastErr = rerr
		case !e.free && e.attempt == g.attempt:
			expect = e.seq // ours, at a sequence we did not see
		case unclear:
			return 0, nil // not ours any more; our release may have freed it
		default:
			return 0, ErrNotHeld
		}
	}
	return 0, fmt.Errorf("lock: release of %q unresolved (it expires within the TTL): %w", g.key, errors.Join(lastErr, ctx.Err()))
}
