package lock

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/internal/condkv"
	"github.com/concordrpc/concord/internal/wait"
)

// ticketToken is the first token of every ticket key:
// _cq.<key>.<contender ID>. A contender ID is one token, so the tickets of
// key K are exactly the keys matching _cq.<K>.*, none of another key's;
// keys of locks and elections start with mutexPrefix or electionPrefix,
// never with it.
const ticketToken = "_cq"

// Headers of tickets and of the key messages that serve them.
const (
	// hdrOrder is on a ticket's refreshes: the sequence of its first
	// publish, its place in line.
	hdrOrder = "Concord-Order"
	// hdrServed is on every message of a grant that consumed a ticket
	// (the grant, its refreshes, its release marker): that ticket's order.
	// Tickets up to it no longer count as waiting.
	hdrServed = "Concord-Served"
)

// ticketPrefix returns the prefix of key's ticket keys.
func ticketPrefix(key string) string { return ticketToken + "." + key + "." }

// ticketPattern returns the pattern matching exactly key's tickets.
func ticketPattern(key string) string { return ticketPrefix(key) + "*" }

// ticket is one waiting acquisition's place in line for a key: a message
// on a ticket key of its Mutex or Election (which acquires once at a
// time), with the session's TTL, re-published every TTL/3 while it waits.
// Its order is the stream sequence of its first publish, carried by its
// refreshes in hdrOrder; each message carries the acquisition's nonce in
// hdrAttempt. Reusing the contender's ticket key keeps the keys that
// tickets leave behind (purge markers, for a second) to one per contender.
type ticket struct {
	st    *kvStore
	nonce string    // this acquisition's
	key   string    // the ticket's own key
	order uint64    // sequence of the first publish; 0 before it
	seq   uint64    // sequence of the ticket key's last message, if known
	sent  time.Time // send time of its last acknowledged write
	// sentFirst is set once a first publish was sent: with order still
	// 0, it may have committed unseen (the answer lost, or the context
	// ended first), and remove must look.
	sentFirst bool
	// floor is the sequence of the last message of a ticket given up by
	// requeue: a message of this acquisition up to it is not a new
	// publish's.
	floor uint64
}

func newTicket(st *kvStore, key, contender string, seq uint64) *ticket {
	return &ticket{st: st, nonce: newID(), key: ticketPrefix(key) + contender, seq: seq}
}

// ours reports whether e, a ticket key's last message, is this
// acquisition's ticket.
func (t *ticket) ours(e condkv.Entry) bool {
	return e.Live && e.Header.Get(hdrAttempt) == t.nonce
}

// put publishes the ticket, or refreshes it, with a write conditional on
// the ticket key's last message. A write whose answer was lost, or that
// conflicts, is resolved by reading the ticket key: a message of this
// acquisition there is adopted; anything else (the contender's earlier
// ticket, not yet removed, or a marker) is replaced. A ticket that expired
// meanwhile (the waiter was late to refresh it) is published anew, with a
// new order: its place is lost.
func (t *ticket) put(ctx context.Context, s *Session) error {
	var err error
	pause := false // the last try failed without a definite answer
	for i := range 6 {
		if pause && !wait.Sleep(ctx, backoff(i)) {
			return ctx.Err()
		}
		pause = true
		h := nats.Header{}
		h.Set(hdrAttempt, t.nonce)
		if t.order != 0 {
			h.Set(hdrOrder, strconv.FormatUint(t.order, 10))
		}
		pctx, cancel := s.opCtx(ctx)
		send := time.Now()
		if t.order == 0 {
			t.sentFirst = true
		}
		var seq uint64
		seq, err = t.st.b.Put(pctx, t.key, nil, h, t.seq, s.cfg.ttl)
		cancel()
		if err == nil {
			if t.order == 0 {
				t.order = seq
			}
			t.seq, t.sent = seq, send
			return nil
		}
		if coord.IsRefused(err) && !coord.IsConflict(err) {
			continue
		}
		rctx, rcancel := s.opCtx(ctx)
		e, rerr := t.st.b.Last(rctx, t.key)
		rcancel()
		switch {
		case rerr != nil:
			err = rerr
		case t.ours(e) && (t.order != 0 || e.Seq > t.floor): // a write of ours committed unseen
			if t.order == 0 {
				t.order = orderOf(e.Header, e.Seq)
			}
			t.seq, t.sent = e.Seq, send
			return nil
		default: // replace what is there, at once
			t.order, t.seq, pause = 0, e.Seq, false
		}
	}
	return err
}

// requeue makes the next put publish the ticket anew, with a new order,
// replacing its last message: for a ticket that a grant not its own
// counted as served. The nonce stays, so that remove still knows the old
// ticket as its own if no new one is published.
func (t *ticket) requeue() {
	t.order, t.floor = 0, t.seq
}

// due returns when the ticket must be refreshed.
func (t *ticket) due(ttl time.Duration) time.Time { return t.sent.Add(ttl / 3) }

// remove replaces the ticket with a purge marker (which lives a second),
// conditionally on its last message, so that it no longer counts as
// waiting; it leaves alone a later ticket of the same contender. It runs
// after the acquisition returned, in the background, and Session.Close
// waits for it, so all its requests share one bound of their own: the op
// timeout. A ticket it cannot remove expires within the TTL. It returns
// the sequence of the ticket key's last message, if known (0 otherwise):
// the next ticket of the contender expects it.
func (t *ticket) remove(s *Session) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.opTimeout)
	defer cancel()
	expect := t.seq
	if t.order == 0 {
		if !t.sentFirst {
			return 0 // never published
		}
		// A first publish whose outcome is unknown: it may have
		// committed, and would hold up the line for a TTL.
		e, ok := t.last(ctx, s)
		if !ok || !t.ours(e) {
			return 0
		}
		expect = e.Seq
	}
	for i := range 3 {
		if s.node.Conn().IsClosed() || ctx.Err() != nil {
			return 0
		}
		seq, err := t.st.b.Purge(ctx, t.key, expect)
		if err == nil {
			return seq
		}
		e, ok := t.last(ctx, s)
		if ok {
			if !t.ours(e) {
				return 0 // gone, or a later ticket
			}
			expect = e.Seq
		}
		wait.Sleep(ctx, backoff(i))
	}
	return 0
}

// last reads the ticket key's last message within ctx.
func (t *ticket) last(ctx context.Context, s *Session) (condkv.Entry, bool) {
	if s.node.Conn().IsClosed() {
		return condkv.Entry{}, false
	}
	e, err := t.st.b.Last(ctx, t.key)
	return e, err == nil
}

// orderOf returns a ticket message's order: its hdrOrder, or its own
// sequence (the first publish).
func orderOf(h nats.Header, seq uint64) uint64 {
	if o, err := strconv.ParseUint(h.Get(hdrOrder), 10, 64); err == nil && o > 0 {
		return o
	}
	return seq
}

// servedOf returns the order a key message says was served, or 0.
func servedOf(h nats.Header) uint64 {
	o, _ := strconv.ParseUint(h.Get(hdrServed), 10, 64)
	return o
}

// keyView is what a process knows of one key and its tickets, from the
// key's shared watch (which delivers both, in stream order, starting with
// the last message of each) and from releases in the process. It is a
// hint for waking and ordering waiters: grants remain the conditional
// writes. Guarded by its sharedWatch's mu.
type keyView struct {
	key     string
	tprefix string
	// seen is the highest stream sequence the watch delivered.
	seen uint64
	// The key's last message known: its sequence (0: none seen), whether
	// it frees the key (a marker), the holder's attempt ID and when it
	// expires.
	keySeq     uint64
	keyFree    bool
	keyAttempt string
	keyExpires time.Time
	// served is the highest order a key message said was served: tickets
	// up to it do not count, even before their removal is seen.
	served  uint64
	tickets map[string]*waiting // by ticket key's last token
	// local counts the acquisitions of this process waiting in line
	// (acquireInLine), tickets published or not.
	local int
}

// waiting is a ticket as a keyView knows it.
type waiting struct {
	order, seq uint64
	expires    time.Time // by the server's clock: its last message's time plus TTL
}

func newKeyView(key string) *keyView {
	return &keyView{key: key, tprefix: ticketPrefix(key), tickets: map[string]*waiting{}}
}

// apply records a message the watch delivered: its key, headers, stream
// sequence and time. It reports whether the message was on the key itself
// (not a ticket).
func (v *keyView) apply(key string, h nats.Header, seq uint64, at time.Time) bool {
	v.seen = max(v.seen, seq)
	marker := condkv.IsMarker(h)
	if key == v.key {
		if o := servedOf(h); o < seq {
			// A served order is a ticket's, written before the grant: a
			// larger one is not believed (it would make every ticket
			// re-queue, see acquireInLine).
			v.serve(o)
		}
		if seq > v.keySeq {
			v.keySeq, v.keyFree, v.keyAttempt, v.keyExpires = seq, marker, "", time.Time{}
			if !marker {
				v.keyAttempt, v.keyExpires = h.Get(hdrAttempt), expiresAt(h, at)
			}
		}
		return true
	}
	id, ok := strings.CutPrefix(key, v.tprefix)
	if !ok || strings.Contains(id, ".") {
		return false
	}
	q := v.tickets[id]
	switch {
	case marker:
		if q != nil && seq > q.seq {
			delete(v.tickets, id)
		}
	case q == nil || seq > q.seq:
		if o := orderOf(h, seq); o > v.served {
			v.tickets[id] = &waiting{order: o, seq: seq, expires: expiresAt(h, at)}
		} else {
			delete(v.tickets, id)
		}
	}
	return false
}

// serve records that the ticket of order o was served, and forgets the
// tickets up to it.
func (v *keyView) serve(o uint64) {
	if o <= v.served {
		return
	}
	v.served = o
	for id, q := range v.tickets {
		if q.order <= o {
			delete(v.tickets, id)
		}
	}
}

// released records a release marker of the key written in this process
// by a grant that served order (0: none).
func (v *keyView) released(seq, served uint64) {
	v.serve(served)
	if seq > v.keySeq {
		v.keySeq, v.keyFree, v.keyAttempt, v.keyExpires = seq, true, "", time.Time{}
	}
}

// ahead returns the ID and state of the first ticket in line before
// order, if any. (Tickets up to served are not kept.)
func (v *keyView) ahead(order uint64) (string, waiting, bool) {
	var id string
	var first *waiting
	for i, q := range v.tickets {
		if q.order < order && (first == nil || q.order < first.order) {
			id, first = i, q
		}
	}
	if first == nil {
		return "", waiting{}, false
	}
	return id, *first, true
}

// checked records a read of ticket id's key: e is its last message.
func (v *keyView) checked(id string, e condkv.Entry) {
	q := v.tickets[id]
	switch {
	case q == nil:
	case !e.Live || orderOf(e.Header, e.Seq) != q.order:
		if e.Seq == 0 || e.Seq >= q.seq {
			delete(v.tickets, id)
		}
	case e.Seq >= q.seq:
		q.seq, q.expires = e.Seq, e.Expires
	}
}

// waiting reports whether some ticket counts as waiting in the view, or
// an acquisition of this process waits in line.
func (v *keyView) waiting() bool { return len(v.tickets) > 0 || v.local > 0 }

// expiresAt returns when a message stored at at with headers h expires,
// or the zero time without a TTL.
func expiresAt(h nats.Header, at time.Time) time.Time {
	ttl, err := time.ParseDuration(h.Get("Nats-TTL"))
	if err != nil || at.IsZero() {
		return time.Time{}
	}
	return at.Add(ttl)
}
