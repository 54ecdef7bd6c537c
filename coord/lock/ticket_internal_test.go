package lock

import (
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/concordrpc/concord/coord/internal/condkv"
	"github.com/concordrpc/concord/internal/nodetest"
)

// TestKeyViewOrder drives a keyView with the messages a watch of a key
// and its tickets delivers, and checks who is first in line: by first
// publish, past refreshes, removals, served grants and late messages.
func TestKeyViewOrder(t *testing.T) {
	v := newKeyView("mutex.k")
	at := time.Now()
	ticket := func(id string, seq, order uint64) {
		h := nats.Header{}
		if order != 0 {
			h.Set(hdrOrder, strconv.FormatUint(order, 10))
		}
		h.Set("Nats-TTL", "10s")
		if v.apply(ticketPrefix("mutex.k")+id, h, seq, at) {
			t.Fatalf("ticket %s taken for the key", id)
		}
	}
	marker := func(key string, seq uint64, served uint64) {
		h := nats.Header{"KV-Operation": []string{"PURGE"}}
		if served != 0 {
			h.Set(hdrServed, strconv.FormatUint(served, 10))
		}
		v.apply(key, h, seq, at)
	}
	first := func(order uint64) string {
		id, _, ok := v.ahead(order)
		if !ok {
			return ""
		}
		return id
	}
	ticket("a", 10, 0)
	ticket("b", 11, 0)
	ticket("c", 12, 0)
	ticket("a", 13, 10) // a refresh keeps a's place
	if got := first(12); got != "a" {
		t.Fatalf("first before c: %q, want a", got)
	}
	if got := first(10); got != "" {
		t.Fatalf("first before a: %q, want none", got)
	}
	grant := nats.Header{hdrAttempt: []string{"x"}, hdrServed: []string{"10"}}
	if !v.apply("mutex.k", grant, 14, at) {
		t.Fatal("the key's message taken for a ticket")
	}
	if got := first(12); got != "b" {
		t.Fatalf("first before c once a was served: %q, want b", got)
	}
	if v.keySeq != 14 || v.keyFree || v.keyAttempt != "x" {
		t.Fatalf("key %d free %v attempt %q", v.keySeq, v.keyFree, v.keyAttempt)
	}
	marker(ticketPrefix("mutex.k")+"b", 15, 0) // b gave up
	if got := first(12); got != "" {
		t.Fatalf("first before c once b left: %q, want none", got)
	}
	marker("mutex.k", 16, 10)
	v.apply("mutex.k", grant, 14, at) // late: changes nothing
	if !v.keyFree || v.keySeq != 16 {
		t.Fatalf("key %d free %v after the release", v.keySeq, v.keyFree)
	}
	ticket("a", 17, 0) // a queues again: behind c
	if got := first(17); got != "c" {
		t.Fatalf("first before a's new ticket: %q, want c", got)
	}
	v.released(18, 12) // c served and released in this process
	if got := first(17); got != "" || !v.keyFree || v.keySeq != 18 {
		t.Fatalf("after c: first %q, key %d free %v", got, v.keySeq, v.keyFree)
	}
	v.checked("a", condkv.Entry{Seq: 19}) // a's ticket read back: gone
	if v.waiting() {
		t.Fatal("a ticket still waits after a's was read back gone")
	}
	ticket("d", 20, 0)
	bogus := nats.Header{hdrAttempt: []string{"y"}, hdrServed: []string{"21"}}
	v.apply("mutex.k", bogus, 21, at) // serves its own sequence: not believed
	if got := first(22); got != "d" || v.served != 12 {
		t.Fatalf("after a grant naming an order not before it: first %q, served %d", got, v.served)
	}
}

// TestContenderExpectsAfterRemoval checks what a contender's next ticket
// expects after a ticket's removal: the removal's marker while it lives,
// and an empty key once the marker has expired, so that the next ticket's
// first write is accepted at once (a stale sequence would conflict). The
// server's expiry runs on its own timer, so the writes are checked
// against what the key holds when they are sent (read first, bounded),
// and the contender's guesses against the clock.
func TestContenderExpectsAfterRemoval(t *testing.T) {
	n := nodetest.Open(t)
	ctx := nodetest.Within(t, 30*time.Second)
	s, err := NewSession(ctx, FromNode(n), WithTTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := &contender{id: "c"}
	key := ticketPrefix("mutex.again") + c.id
	// put writes a ticket expecting what c expects, if the key's last
	// message is (or becomes, within a few seconds) what c expects.
	put := func() *ticket {
		t.Helper()
		want := c.expect()
		for i := 0; ; i++ {
			e, err := s.locks.b.Last(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if e.Seq == want {
				break
			}
			if i == 100 || want != 0 {
				t.Fatalf("the ticket key's last message is %d, the contender expects %d", e.Seq, want)
			}
			time.Sleep(50 * time.Millisecond) // the marker, not yet expired by the server
		}
		tk := newTicket(s.locks, "mutex.again", c.id, want)
		h := nats.Header{}
		h.Set(hdrAttempt, tk.nonce)
		seq, err := tk.st.b.Put(ctx, tk.key, nil, h, tk.seq, time.Minute)
		if err != nil {
			t.Fatalf("first write of a ticket expecting %d: %v", tk.seq, err)
		}
		tk.order, tk.seq = seq, seq
		c.wrote(seq)
		return tk
	}
	tk := put()
	removedAt := time.Now()
	marker := tk.remove(s)
	if marker == 0 {
		t.Fatal("ticket not removed")
	}
	c.removed(tk.seq, marker)
	if got := c.expect(); got != marker && time.Since(removedAt) < markerGone {
		t.Fatalf("expect %d right after the removal, want its marker %d", got, marker)
	}
	if time.Since(removedAt) < condkv.MarkerTTL/2 {
		tk = put() // the marker still lives: expecting it is right
	}
	c.removed(tk.seq, tk.remove(s))
	c.wrote(c.expect()) // an acquisition that published no ticket
	time.Sleep(markerGone + 100*time.Millisecond)
	if got := c.expect(); got != 0 {
		t.Fatalf("expect %d once the marker expired, want 0", got)
	}
	put() // the marker is gone: expecting an empty key is right
}
