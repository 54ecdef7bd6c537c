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

// ReservedPrefix starts the keys of waiters' tickets in the locks and
// elections buckets. Lock and election names whose first token is
// ReservedPrefix's (that is, "_cq" or anything starting "_cq.") are
// refused with ErrInvalidName, so that no key of a lock or election is
// ever a ticket's.
const ReservedPrefix = ticketToken + "."

// ticketToken is the first token of every ticket key:
// _cq.<key>.<ticket ID>. A ticket ID is one token, so the tickets of key K
// are exactly the keys matching _cq.<K>.*, none of another key's.
const ticketToken = "_cq"

// Headers of tickets and of the grants that consume them.
const (
	// hdrOrder is on a ticket's refreshes: the sequence of its first
	// publish, its place in line.
	hdrOrder = "Concord-Order"
	// hdrTicket is on a grant's messages: the ID of the ticket the grant
	// consumed, which then no longer counts as waiting.
	hdrTicket = "Concord-Ticket"
)

// ticketPrefix returns the prefix of key's ticket keys.
func ticketPrefix(key string) string { return ticketToken + "." + key + "." }

// ticketPattern returns the pattern matching exactly key's tickets.
func ticketPattern(key string) string { return ticketPrefix(key) + "*" }

// ticket is one waiting acquisition's place in line for a key: a message
// on its own key in the key's bucket, with the session's TTL, re-published
// every TTL/3 while it waits. Its order is the stream sequence of its
// first publish, carried by its refreshes in hdrOrder.
type ticket struct {
	st    *kvStore
	id    string
	key   string    // the ticket's own key
	order uint64    // sequence of the first publish; 0 before it
	seq   uint64    // sequence of its last message
	sent  time.Time // send time of its last acknowledged write
}

func newTicket(st *kvStore, key string) *ticket {
	id := newID()
	return &ticket{st: st, id: id, key: ticketPrefix(key) + id}
}

// put publishes the ticket, or refreshes it, with a write conditional on
// its last message. A write whose answer was lost is resolved by reading
// the ticket back. A ticket that expired meanwhile (the waiter was late
// to refresh it) is published anew, with a new order: its place is lost.
func (t *ticket) put(ctx context.Context, s *Session) error {
	var err error
	for i := range 6 {
		if i > 0 && !wait.Sleep(ctx, backoff(i)) {
			return ctx.Err()
		}
		h := nats.Header{}
		if t.order != 0 {
			h.Set(hdrOrder, strconv.FormatUint(t.order, 10))
		}
		pctx, cancel := s.opCtx(ctx)
		send := time.Now()
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
		// A conflict, or an unclear outcome: read the ticket back.
		rctx, rcancel := s.opCtx(ctx)
		e, rerr := t.st.b.Last(rctx, t.key)
		rcancel()
		switch {
		case rerr != nil:
			err = rerr
		case e.Live: // a write of ours committed unseen
			if t.order == 0 {
				t.order = orderOf(e.Header, e.Seq)
			}
			t.seq, t.sent = e.Seq, send
			return nil
		default: // expired or never written
			t.order, t.seq = 0, e.Seq
		}
	}
	return err
}

// due returns when the ticket must be refreshed.
func (t *ticket) due(ttl time.Duration) time.Time { return t.sent.Add(ttl / 3) }

// remove deletes the ticket with a purge marker conditional on its last
// message, so that it no longer counts as waiting. It has its own bound
// (the op timeout, a few times) since it runs after the acquisition
// returned; a ticket it cannot remove expires within the TTL.
func (t *ticket) remove(s *Session) {
	if t.order == 0 && t.seq == 0 {
		return // never published
	}
	expect := t.seq
	for i := range 3 {
		if s.node.Conn().IsClosed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.opTimeout)
		_, err := t.st.b.Purge(ctx, t.key, expect)
		if err == nil {
			cancel()
			return
		}
		e, rerr := t.st.b.Last(ctx, t.key)
		cancel()
		if rerr == nil {
			if !e.Live {
				return // gone: expired, or removed by an unclear write
			}
			expect = e.Seq
		}
		time.Sleep(backoff(i))
	}
}

// orderOf returns a ticket message's order: its hdrOrder, or its own
// sequence (the first publish).
func orderOf(h nats.Header, seq uint64) uint64 {
	if o, err := strconv.ParseUint(h.Get(hdrOrder), 10, 64); err == nil && o > 0 {
		return o
	}
	return seq
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
	tickets    map[string]*waiting // by ticket ID
}

// waiting is a ticket as a keyView knows it.
type waiting struct {
	order, seq uint64
	expires    time.Time // by the server's clock: its last message's time plus TTL
	consumed   bool      // a grant named it
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
		if seq > v.keySeq {
			v.keySeq, v.keyFree, v.keyAttempt, v.keyExpires = seq, marker, "", time.Time{}
			if !marker {
				v.keyAttempt, v.keyExpires = h.Get(hdrAttempt), expiresAt(h, at)
				if q := v.tickets[h.Get(hdrTicket)]; q != nil {
					q.consumed = true
				}
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
	case q == nil:
		v.tickets[id] = &waiting{order: orderOf(h, seq), seq: seq, expires: expiresAt(h, at)}
	case seq > q.seq:
		q.seq, q.expires = seq, expiresAt(h, at)
	}
	return false
}

// released records a release marker of the key written in this process.
func (v *keyView) released(seq uint64) {
	if seq > v.keySeq {
		v.keySeq, v.keyFree, v.keyAttempt, v.keyExpires = seq, true, "", time.Time{}
	}
}

// ahead returns the ID and state of the first ticket in line before
// order that counts (not consumed by a grant), if any.
func (v *keyView) ahead(order uint64) (string, waiting, bool) {
	var id string
	var first *waiting
	for i, q := range v.tickets {
		if !q.consumed && q.order < order && (first == nil || q.order < first.order) {
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
	case !e.Live:
		if e.Seq == 0 || e.Seq > q.seq {
			delete(v.tickets, id)
		}
	case e.Seq >= q.seq:
		q.seq, q.expires = e.Seq, e.Expires
	}
}

// expiresAt returns when a message stored at at with headers h expires,
// or the zero time without a TTL.
func expiresAt(h nats.Header, at time.Time) time.Time {
	ttl, err := time.ParseDuration(h.Get("Nats-TTL"))
	if err != nil || at.IsZero() {
		return time.Time{}
	}
	return at.Add(ttl)
}
