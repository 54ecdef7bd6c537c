package lock

import (
	"context"
	"errors"
	"fmt"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/internal/wait"
	"math"
	"math/rand/v2"
	"time"
)

// unknownSeq asks tryAcquire to read the key before its first write.
const unknownSeq = math.MaxUint64

// maxTries bounds the writes and reads of one acquisition attempt.
const maxTries = 16

// errRetry reports an attempt that ran out of tries without a definite
// answer (the node is unreachable or the key changes fast).
var errRetry = errors.New("lock: acquisition attempt undecided")

// tryAcquire makes one attempt to take key for the session, writing data
// with a new attempt ID conditionally on the key being free at sequence
// expect (unknownSeq: read it first). It returns the grant; or ErrLocked and
// the holder's entry; or the session's error, ctx's error, or errRetry.
//
// A write whose answer is lost (a timeout) may still commit. Every write of
// the attempt carries the same attempt ID, so a read that shows it proves
// the grant is ours; if the attempt ends undecided, abandon makes sure no
// write of it can commit later, or releases what did.
func (s *Session) tryAcquire(ctx context.Context, st *kvStore, key string, data []byte, expect uint64) (*grant, entry, error) {
	id := newID()
	var firstSend time.Time
	unclear := false // a write of this attempt may have committed unseen
	read := expect == unknownSeq
	err := errRetry
	for i := range maxTries {
		if cerr := ctx.Err(); cerr != nil {
			err = cerr
			break
		}
		if serr := s.alive(); serr != nil {
			err = serr
			break
		}
		if st.nc.IsClosed() {
			err = fmt.Errorf("%w: connection to the coordination node closed", ErrLeaseLost)
			break
		}
		if read {
			pctx, cancel := s.opCtx(ctx)
			e, rerr := st.last(pctx, key)
			cancel()
			if rerr != nil {
				wait.Sleep(ctx, backoff(i))
				continue
			}
			read = false
			switch {
			case !e.free && e.attempt == id:
				if g, ok := s.adopt(ctx, st, key, data, id, e.seq, e.token, firstSend); ok {
					return g, entry{}, nil
				}
				id, firstSend, unclear, read = newID(), time.Time{}, false, true
				continue
			case !e.free:
				// Our earlier writes expected an older sequence and cannot
				// commit any more.
				return nil, e, ErrLocked
			}
			expect = e.seq
		}
		pctx, cancel := s.opCtx(ctx)
		send := time.Now()
		if firstSend.IsZero() {
			firstSend = send
		}
		seq, perr := st.put(pctx, key, data, id, 0, expect, s.cfg.ttl)
		cancel()
		switch {
		case perr == nil:
			if g, ok := s.adopt(ctx, st, key, data, id, seq, seq, firstSend); ok {
				return g, entry{}, nil
			}
			id, firstSend, unclear, read = newID(), time.Time{}, false, true
		case coord.IsConflict(perr):
			read = true
		case coord.IsRefused(perr):
			wait.Sleep(ctx, backoff(i))
		default:
			unclear, read = true, true
			wait.Sleep(ctx, backoff(i))
		}
	}
	if unclear {
		s.abandon(ctx, st, key, id)
	}
	return nil, entry{}, err
}

// adopt records a confirmed grant. A grant confirmed after its deadline
// (its first write was sent more than a TTL ago) may expire at any moment,
// so adopt gives it back and reports false.
func (s *Session) adopt(ctx context.Context, st *kvStore, key string, data []byte, id string, seq, token uint64, firstSend time.Time) (*grant, bool) {
	g := &grant{
		s: s, st: st, key: key, data: data, attempt: id, token: token, seq: seq,
		deadline: s.leaseEnd(firstSend), done: make(chan struct{}),
	}
	s.mu.Lock()
	ok := s.err == nil && !passed(time.Now(), g.deadline)
	if ok {
		s.grants[g] = struct{}{}
	}
	s.mu.Unlock()
	if !ok {
		g.op.Lock()
		_, _ = g.revoke(context.WithoutCancel(ctx))
		g.op.Unlock()
	}
	return g, ok
}

// abandon resolves an attempt that ended with a write of unknown outcome:
// it releases the key if the write committed, and otherwise writes a release
// marker conditional on the key's current (free) state, after which no
// write of the attempt can commit, since each expected an older sequence.
// It runs after ctx ended, so it has its own bound.
func (s *Session) abandon(ctx context.Context, st *kvStore, key, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(s.cfg.ttl, 5*time.Second))
	defer cancel()
	for i := range 8 {
		if i > 0 && !wait.Sleep(ctx, backoff(i)) || st.nc.IsClosed() {
			return
		}
		pctx, pcancel := s.opCtx(ctx)
		e, err := st.last(pctx, key)
		if err != nil {
			pcancel()
			continue
		}
		if !e.free && e.attempt != id {
			pcancel()
			return // another holder; our writes expected older sequences
		}
		// Free: fence it, so the key moves past every sequence our writes
		// expected. Ours: release our unseen grant.
		_, err = st.release(pctx, key, e.seq)
		pcancel()
		if err == nil {
			return
		}
	}
}

// acquire takes key for the session, waiting while another holder has it.
// Acquisitions of one key in this process queue in arrival order
// (turnQueue): acquire waits for its turn, then contends in the store, and
// passes the turn on when it returns. While it waits for its turn it
// subscribes to the key's shared watch, which keeps the process's one
// consumer on the key alive from one waiter to the next.
//
// In the store, a wait ends on a watch event on the key, on a release of
// the key in this process (which brings the sequence of its release
// marker), on a timer set to when the holder's message would expire (at
// most a TTL, since watchers can miss events), or when ctx or the session
// ends; each wake is followed by one bounded attempt. *hint is the
// sequence the key is expected free at. The watch is stopped in the
// background (stopWatch), so acquire returns as soon as it has the grant.
func (s *Session) acquire(ctx context.Context, st *kvStore, key string, data []byte, hint *uint64, waited *bool) (*grant, error) {
	var w *watch
	defer func() { s.stopWatch(w) }()
	t := st.hub.enqueue(watchKey{stream: st.b.Stream(), key: key})
	var held *entry // our grant, for the next in line
	defer func() { t.leave(held) }()
	if h := s.cfg.hooks; h != nil && h.queued != nil {
		h.queued(s)
	}
	select {
	case <-t.ready:
	default:
		*waited = true // behind another acquisition in this process
		var err error
		if w, err = st.watch(ctx, key); err != nil {
			w = nil // the first in line needs it, and creates it then
		}
		select {
		case <-t.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.done:
			return nil, s.alive()
		}
	}
	// Given the turn by a waiter that just got its grant, we know the key
	// is that grant's: wait for its release or expiry before the first
	// attempt, unless the watch has seen a later message.
	skip := t.held != nil && w != nil
	for i := 0; ; i++ {
		var holder entry
		mustWait := false
		if skip {
			skip = false
			select {
			case <-w.wake: // it may predate the grant; seen tells
			default:
			}
			holder, mustWait = *t.held, w.seen.Load() <= t.held.seq
		}
		if !mustWait {
			if seq, ok := t.freedAt(); ok {
				*hint = seq
			}
			g, e, err := s.tryAcquire(ctx, st, key, data, *hint)
			*hint = unknownSeq
			if err == nil {
				deadline, _ := g.state()
				held = &entry{seq: g.seq, attempt: g.attempt, expires: deadline}
				return g, nil
			}
			if !errors.Is(err, ErrLocked) {
				if ctx.Err() != nil || s.alive() != nil || errors.Is(err, ErrLeaseLost) {
					return nil, err
				}
				wait.Sleep(ctx, backoff(min(i, 8)))
				continue
			}
			if w == nil {
				if w, err = st.watch(ctx, key); err != nil {
					w = nil
					s.fallbacks.watchFailed.Add(1)
					wait.Sleep(ctx, backoff(min(i, 8)))
				}
				continue // re-check: the key may have changed before the watch began
			}
			holder = e
		}
		*waited = true
		s.await(ctx, w, t, holder, hint)
	}
}

// await waits while holder has the key: until the watch w wakes, a
// release in this process reaches t (it sets *hint to the marker's
// sequence), the holder's message would expire (the fallback timer, at
// most a TTL), or ctx or the session ends.
func (s *Session) await(ctx context.Context, w *watch, t *turn, holder entry, hint *uint64) {
	w.ignoring(holder.attempt)
	timeout := s.cfg.ttl
	if !holder.expires.IsZero() {
		timeout = min(timeout, max(time.Until(holder.expires)+20*time.Millisecond, 20*time.Millisecond))
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-w.wake:
	case seq := <-t.freed:
		*hint = seq
	case <-timer.C:
		s.fallbacks.timerWakes.Add(1)
	case <-ctx.Done():
	case <-s.done:
	}
}

// backoff returns a jittered delay that grows with attempt: 5ms to 640ms.
func backoff(attempt int) time.Duration {
	d := 5 * time.Millisecond << min(attempt, 7)
	return d/2 + rand.N(d/2)
}
