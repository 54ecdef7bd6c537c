package lock

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/internal/condkv"
	"github.com/concordrpc/concord/internal/wait"
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
// expect (unknownSeq: read it first). served, if not 0, is the order of the
// waiter's ticket, which the grant consumes. It returns the grant; or ErrLocked and
// the holder's entry; or the session's error, ctx's error, or errRetry.
//
// A write whose answer is lost (a timeout) may still commit. Every write of
// the attempt carries the same attempt ID, so a read that shows it proves
// the grant is ours; if the attempt ends undecided, abandon makes sure no
// write of it can commit later, or releases what did.
func (s *Session) tryAcquire(ctx context.Context, st *kvStore, key string, data []byte, served, expect uint64) (*grant, entry, error) {
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
				if g, ok := s.adopt(ctx, st, key, data, id, served, e.seq, e.token, firstSend); ok {
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
		seq, perr := st.put(pctx, key, data, id, served, 0, expect, s.cfg.ttl)
		cancel()
		switch {
		case perr == nil:
			if g, ok := s.adopt(ctx, st, key, data, id, served, seq, seq, firstSend); ok {
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
func (s *Session) adopt(ctx context.Context, st *kvStore, key string, data []byte, id string, served, seq, token uint64, firstSend time.Time) (*grant, bool) {
	g := &grant{
		s: s, st: st, key: key, data: data, attempt: id, served: served, token: token, seq: seq,
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
		_, err = st.release(pctx, key, 0, e.seq)
		pcancel()
		if err == nil {
			return
		}
	}
}

// contender is a Mutex's or Election's place in the tickets: the last
// token of its ticket key, which its acquisitions (one at a time) reuse,
// and the sequence of that key's last message as last known.
type contender struct {
	id   string
	mu   sync.Mutex
	seq  uint64    // the ticket key's last message, as last known
	gone time.Time // when that message, a removal's marker, has expired; zero if it is not one
}

// markerGone is how long after a ticket's removal its marker is taken to
// be gone (condkv.MarkerTTL and a margin for the server's expiry): the
// next ticket then expects an empty key. A wrong guess costs a conflict
// and a read, as a stale sequence does.
const markerGone = condkv.MarkerTTL + 500*time.Millisecond

// expect returns what the contender's next ticket expects its key's last
// message to be: the last known sequence, or 0 once that was a removal's
// marker that has expired.
func (c *contender) expect() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.gone.IsZero() && time.Now().After(c.gone) {
		return 0
	}
	return c.seq
}

// wrote records the sequence of a ticket key's last message as an
// acquisition left it (unchanged if it published nothing).
func (c *contender) wrote(seq uint64) {
	c.mu.Lock()
	if seq != c.seq {
		c.seq, c.gone = seq, time.Time{}
	}
	c.mu.Unlock()
}

// removed records the marker that replaced the ticket whose last message
// was last, unless a later ticket has written since.
func (c *contender) removed(last, marker uint64) {
	c.mu.Lock()
	if c.seq == last {
		c.seq, c.gone = marker, time.Now().Add(markerGone)
	}
	c.mu.Unlock()
}

// acquire takes key for the session, waiting while another holder has it
// or other waiters are ahead in line. A key that is free with nobody
// waiting is taken as TryLock takes it (acquireFree). Otherwise the
// acquisition waits in line (acquireInLine). *waited reports a wait.
func (s *Session) acquire(ctx context.Context, st *kvStore, key string, data []byte, c *contender, hint *uint64, waited *bool) (*grant, error) {
	g, err := s.acquireFree(ctx, st, key, data, hint, true)
	if !errors.Is(err, ErrLocked) {
		return g, err
	}
	*waited = true
	return s.acquireInLine(ctx, st, key, data, c)
}

// acquireFree takes key if it is free and no ticket waits for it, and
// otherwise returns ErrLocked. If a waiter in this process watches the
// key, the watch's view decides, without a read: a ticket waiting or the
// key held means ErrLocked, and a key seen free at a marker is expected
// free there. Otherwise one read (kvStore.waiting) tells whether a ticket
// waits. Then it makes one attempt (tryAcquire) expecting the key free at
// the marker the view saw, or at *hint (the holder's own release marker,
// or 0), which it consumes; an attempt that finds the key held returns
// ErrLocked. A failed read is a missing hint: the attempt is made.
// queued runs the queued hook after a grant.
func (s *Session) acquireFree(ctx context.Context, st *kvStore, key string, data []byte, hint *uint64, queued bool) (*grant, error) {
	expect := *hint
	*hint = unknownSeq
	if v, ok := st.glance(key); ok {
		if v.waiting || v.keySeq != 0 && !v.keyFree {
			return nil, ErrLocked
		}
		if v.keySeq != 0 {
			expect = v.keySeq
		}
	} else {
		pctx, cancel := s.opCtx(ctx)
		waiting, err := st.waiting(pctx, key)
		cancel()
		if err == nil && waiting {
			return nil, ErrLocked
		}
	}
	g, _, err := s.tryAcquire(ctx, st, key, data, 0, expect)
	if h := s.cfg.hooks; err == nil && queued && h != nil && h.queued != nil {
		h.queued(s)
	}
	return g, err
}

// acquireInLine waits in line for key. It joins the key's shared watch,
// which starts with the last message of the key and of each of its
// tickets, then publishes a ticket (see ticket) for contender c: its place
// in line is the ticket's order, the stream sequence of its first
// publish. It writes its grant (tryAcquire, naming the ticket's order)
// only when the watch has delivered its ticket, and with it every earlier
// one, no ticket before it counts (removed, expired, or served: a key
// message names a later or equal order), and the key is free or was last
// seen with another message than the holder it waited for.
//
// A wait ends on a watch event (of the key or a ticket), on a release of
// the key in this process (which brings the sequence of its release
// marker: the first in line writes its grant expecting the key free at
// it, without reading), when the ticket is due for a refresh (every
// TTL/3), on the fallback timer, or when ctx or the session ends. The
// fallback timer is set to when the holder's message would expire, or,
// behind another ticket, when that ticket would expire, at most a TTL:
// then the waiter reads the key (or that ticket) instead of trusting the
// watch, which can skip messages or resume late after a node dies.
//
// The ticket is removed when acquireInLine returns, in the background
// (Session.background): with the grant, which no longer needs it, or
// without. The watch is left in the background too, so acquireInLine
// returns as soon as it has the grant.
func (s *Session) acquireInLine(ctx context.Context, st *kvStore, key string, data []byte, c *contender) (*grant, error) {
	var w *watch
	defer func() { s.stopWatch(w) }()
	for i := 0; w == nil; i++ {
		if err := s.waitErr(ctx, st); err != nil {
			return nil, err
		}
		var err error
		if w, err = st.watch(ctx, key, false); err == nil {
			break
		}
		// Without a watch there is no line to wait in: contend as
		// without tickets, re-trying the watch with a backoff.
		w = nil
		s.fallbacks.watchFailed.Add(1)
		if i > 0 {
			g, _, err := s.tryAcquire(ctx, st, key, data, 0, unknownSeq)
			if err == nil || !errors.Is(err, ErrLocked) && (ctx.Err() != nil || s.alive() != nil || errors.Is(err, ErrLeaseLost)) {
				return g, err
			}
		}
		wait.Sleep(ctx, backoff(min(i, 8)))
	}
	// Acquisitions in this process that arrive from now on queue behind
	// this one (acquireFree), even before its ticket is seen.
	w.look(func(v *keyView) { v.local++ })
	defer w.look(func(v *keyView) { v.local-- })
	t := newTicket(st, key, c.id, c.expect())
	defer func() {
		// The contender's next ticket expects this one, or its removal's
		// marker once that is written.
		last := t.seq
		c.wrote(last)
		s.background(func() {
			if seq := t.remove(s); seq != 0 {
				c.removed(last, seq)
			}
		})
	}()
	var holder *entry       // the holder the key was last found with
	force := false          // the fallback timer fired: read the key
	placed := false         // the ticket was published
	checkedAt := time.Now() // the last read of the key or the ticket ahead: the fallback is a TTL after it
	for i := 0; ; i++ {
		if err := s.waitErr(ctx, st); err != nil {
			return nil, err
		}
		if t.order == 0 || !time.Now().Before(t.due(s.cfg.ttl)) {
			if err := t.put(ctx, s); err != nil {
				// Without a ticket there is no place in line (the
				// stream refuses it, or cannot be reached): contend as
				// without tickets meanwhile, as when no watch can be
				// made.
				if ctx.Err() == nil && s.alive() == nil {
					g, _, err := s.tryAcquire(ctx, st, key, data, 0, unknownSeq)
					if err == nil || !errors.Is(err, ErrLocked) && (ctx.Err() != nil || s.alive() != nil || errors.Is(err, ErrLeaseLost)) {
						return g, err
					}
				}
				wait.Sleep(ctx, backoff(min(i, 8)))
				continue
			}
			if h := s.cfg.hooks; !placed && h != nil && h.queued != nil {
				h.queued(s)
			}
			placed = true
		}
		var (
			headID       string
			head         waiting
			behind, seen bool
			served       uint64
			cur          entry // the key, as the view knows it; seq 0: unknown
		)
		w.look(func(v *keyView) {
			headID, head, behind = v.ahead(t.order)
			seen = v.seen >= t.order
			served = v.served
			cur = entry{seq: v.keySeq, free: v.keyFree, attempt: v.keyAttempt, expires: v.keyExpires}
		})
		if t.order != 0 && served >= t.order {
			// A grant counted our ticket as served and it was not ours
			// (a grant whose writer's view missed our ticket, or an
			// attempt of ours given back): every view now drops it, so
			// later tickets would no longer wait for it. Queue again,
			// at the back of the line as it is now.
			t.requeue()
			continue
		}
		until := checkedAt.Add(s.cfg.ttl) // however often refreshes wake the loop
		changed := holder == nil || cur.seq > holder.seq && (cur.free || cur.attempt != holder.attempt)
		switch {
		case behind:
			until = earliest(until, head.expires, 20*time.Millisecond)
		case !seen && !force:
			// The watch has not delivered our ticket yet.
			if !cur.free {
				until = earliest(until, cur.expires, 20*time.Millisecond)
			}
		case force || changed && (cur.seq == 0 || cur.free):
			expect := uint64(unknownSeq)
			if !force && cur.free && cur.seq > 0 {
				expect = cur.seq
			}
			force = false
			checkedAt = time.Now()
			g, e, err := s.tryAcquire(ctx, st, key, data, t.order, expect)
			if err == nil {
				return g, nil
			}
			if !errors.Is(err, ErrLocked) {
				if ctx.Err() != nil || s.alive() != nil || errors.Is(err, ErrLeaseLost) {
					return nil, err
				}
				wait.Sleep(ctx, backoff(min(i, 8)))
				continue
			}
			holder = &e
			until = earliest(until, e.expires, 20*time.Millisecond)
		default:
			// Held, as the view shows: by a holder we had not seen, or a
			// refresh of the one we wait for.
			if holder == nil || cur.seq > holder.seq {
				holder = &cur
			}
			until = earliest(until, holder.expires, 20*time.Millisecond)
		}
		if soon := time.Now().Add(20 * time.Millisecond); until.Before(soon) {
			until = soon // a re-check at most every 20 ms, however late the server expires
		}
		if !s.await(ctx, w, until, t.due(s.cfg.ttl)) {
			continue
		}
		s.fallbacks.timerWakes.Add(1)
		if !behind {
			force = true // re-check the key itself
			continue
		}
		checkedAt = time.Now()
		rctx, cancel := s.opCtx(ctx)
		e, err := st.b.Last(rctx, ticketPrefix(key)+headID)
		cancel()
		if err == nil {
			w.look(func(v *keyView) { v.checked(headID, e) })
		}
	}
}

// waitErr returns why a waiting acquisition must end, or nil: ctx ended,
// the session ended, or the connection closed.
func (s *Session) waitErr(ctx context.Context, st *kvStore) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.alive(); err != nil {
		return err
	}
	if st.nc.IsClosed() {
		return fmt.Errorf("%w: connection to the coordination node closed", ErrLeaseLost)
	}
	return nil
}

// await waits until the watch w wakes, until (the fallback timer) or due
// (the ticket's refresh) comes, or ctx or the session ends. It reports
// whether the fallback timer fired.
func (s *Session) await(ctx context.Context, w *watch, until, due time.Time) bool {
	timer := time.NewTimer(max(time.Until(earliest(until, due, 0)), time.Millisecond))
	defer timer.Stop()
	select {
	case <-w.wake:
	case <-timer.C:
		return !time.Now().Before(until)
	case <-ctx.Done():
	case <-s.done:
	}
	return false
}

// earliest returns the earlier of a and b+slack, or a when b is zero.
func earliest(a, b time.Time, slack time.Duration) time.Time {
	if b.IsZero() || a.Before(b.Add(slack)) {
		return a
	}
	return b.Add(slack)
}

// backoff returns a jittered delay that grows with attempt: 5ms to 640ms.
func backoff(attempt int) time.Duration {
	d := 5 * time.Millisecond << min(attempt, 7)
	return d/2 + rand.N(d/2)
}
