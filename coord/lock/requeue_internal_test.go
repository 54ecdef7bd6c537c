package lock

import (
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/internal/nodetest"
)

// TestServedPastTicketRequeues checks that a waiter whose ticket a grant
// not its own counted as served (a grant written by a process whose view
// missed that ticket) queues again, before tickets published after that
// grant, instead of waiting without a place that anyone else respects.
//
// The line: a ticket x (the test's, never served) blocks the free key, y
// is a waiting Mutex's, z another of the test's. Then a grant serving z is
// written past x and y. y must publish a new ticket after it, and a waiter
// w that queues next must be granted after y.
func TestServedPastTicketRequeues(t *testing.T) {
	n := nodetest.Open(t)
	b := FromNode(n)
	ctx := nodetest.Within(t, 60*time.Second)
	st := newKVStore(n, coord.BucketLocks)
	key := "mutex.requeue"
	fake := func(id string) uint64 {
		t.Helper()
		h := nats.Header{}
		h.Set(hdrAttempt, "test-"+id)
		seq, err := st.b.Put(ctx, ticketPrefix(key)+id, nil, h, 0, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	fake("x")

	granted := make(chan string, 2)
	var wg sync.WaitGroup
	defer wg.Wait()
	waiter := func(name string) *Mutex {
		queued := make(chan struct{}, 1)
		m := NewMutex(b, "requeue", WithTTL(10*time.Second), WithQueuedHookForTest(func(*Session) { queued <- struct{}{} }))
		wg.Go(func() {
			if _, err := m.Lock(ctx); err != nil {
				t.Errorf("%s: %v", name, err)
				granted <- name + " failed"
				return
			}
			granted <- name
			if err := m.Unlock(ctx); err != nil {
				t.Errorf("%s: unlock: %v", name, err)
			}
		})
		select {
		case <-queued:
		case <-ctx.Done():
			t.Fatalf("%s did not queue", name)
		}
		return m
	}
	y := waiter("y")
	z := fake("z")

	// The faulty grant: it serves z while x and y wait.
	hs, err := NewSession(ctx, b, WithTTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	g, _, err := hs.tryAcquire(ctx, st, key, []byte("h"), z, unknownSeq)
	if err != nil {
		t.Fatal(err)
	}

	// y queues again: its ticket's order is past z.
	yTicket := ticketPrefix(key) + y.h.c.id
	for i := 0; ; i++ {
		e, err := st.b.Last(ctx, yTicket)
		if err == nil && e.Live && orderOf(e.Header, e.Seq) > z {
			break
		}
		if i == 100 {
			t.Fatalf("y's ticket not published anew past the served order %d: %+v, %v", z, e, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waiter("w")
	if _, err := g.release(ctx); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"y", "w"} {
		select {
		case got := <-granted:
			if got != want {
				t.Fatalf("granted %s, want %s", got, want)
			}
		case <-ctx.Done():
			t.Fatalf("%s not granted", want)
		}
	}
}

// TestRequeuedTicketRemoved checks a ticket given up by requeue: the next
// put publishes a new ticket (a new order, not the old message adopted),
// and an acquisition that ends before that put still removes the old
// ticket, which would otherwise make TryLock refuse the free key.
func TestRequeuedTicketRemoved(t *testing.T) {
	n := nodetest.Open(t)
	b := FromNode(n)
	ctx := nodetest.Within(t, 30*time.Second)
	s, err := NewSession(ctx, b, WithTTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, publish := range []bool{true, false} {
		key := "mutex.requeued"
		tk := newTicket(s.locks, key, "c", 0)
		if err := tk.put(ctx, s); err != nil {
			t.Fatal(err)
		}
		old := tk.order
		tk.requeue()
		if publish {
			if err := tk.put(ctx, s); err != nil {
				t.Fatal(err)
			}
			if tk.order <= old {
				t.Fatalf("order %d after requeue, want past %d", tk.order, old)
			}
		}
		if seq := tk.remove(s); seq == 0 {
			t.Fatalf("publish %v: ticket not removed", publish)
		}
		if e, err := s.locks.b.Last(ctx, tk.key); err != nil || e.Live {
			t.Fatalf("publish %v: ticket key after remove: %+v, %v", publish, e, err)
		}
		m := NewMutex(b, "requeued")
		if _, err := m.TryLock(ctx); err != nil {
			t.Fatalf("publish %v: TryLock of the free key: %v", publish, err)
		}
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
