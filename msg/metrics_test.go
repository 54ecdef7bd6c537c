package msg_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/msg"
)

// events collects metrics events, safely.
type events struct {
	mu  sync.Mutex
	all []msg.Event
}

func (e *events) add(ev msg.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

// count counts the events of kind that match f.
func (e *events) count(kind msg.EventKind, f func(msg.Event) bool) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Kind == kind && f(ev) {
			n++
		}
	}
	return n
}

func anyEvent(msg.Event) bool { return true }

// TestMetrics: WithMetrics reports each publish, relay, handle (a
// success, a failure that is retried, a duplicate answered by the inbox)
// and dead letter, with its topic and consumer.
func TestMetrics(t *testing.T) {
	ctx := nodetest.Within(t, 30*time.Second)
	node := nodetest.Open(t)
	db, err := localstore.Open(t.TempDir(), localstore.WithGCInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var evs events
	metrics := msg.WithMetrics(evs.add)
	store := msg.Badger(db)
	ob := msg.NewOutbox(store, metrics)
	relay := msg.StartRelay(node, ob, metrics)
	defer relay.Close()
	var once sync.Once
	tries := &counter{}
	sub, err := msg.Subscribe(ctx, node, store, "billing", topic, func(_ context.Context, _ *localstore.Tx, d *msg.Delivery) error {
		switch p := string(d.Payload); {
		case p == "poison":
			return msg.Permanent(errors.New("cannot bill"))
		case p == "retry" && tries.add(d.ID) == 1:
			return errors.New("not yet")
		}
		return nil
	}, metrics, msg.WithBackoff(10*time.Millisecond, 10*time.Millisecond), msg.WithAckWait(time.Second),
		msg.WithAfterCommit(func(d *msg.Delivery) bool {
			skip := false
			if string(d.Payload) == "dup" {
				once.Do(func() { skip = true }) // as if the process died before the ack
			}
			return skip
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := db.Update(func(tx *localstore.Tx) error {
		for _, p := range []string{"ok", "dup", "poison", "retry"} {
			if _, err := ob.Add(ctx, tx, msg.Message{Topic: topic, Payload: []byte(p)}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ob.Notify()

	isDup := func(e msg.Event) bool { return e.Duplicate }
	for i := 0; evs.count(msg.EventHandle, isDup) == 0 || evs.count(msg.EventDeadLetter, anyEvent) == 0; i++ {
		if i == 1000 {
			t.Fatalf("events %+v", evs.all)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // nothing more is due
	ok := func(e msg.Event) bool {
		return e.Err == nil && !e.Duplicate && e.Consumer == "billing" && e.Topic == topic
	}
	failed := func(e msg.Event) bool { return e.Err != nil && e.Consumer == "billing" }
	for _, c := range []struct {
		what string
		kind msg.EventKind
		f    func(msg.Event) bool
		want int
	}{
		{"publish", msg.EventPublish, func(e msg.Event) bool { return e.Topic == topic && len(e.ID) == 32 }, 4},
		{"relayed", msg.EventRelay, func(e msg.Event) bool { return e.Err == nil && e.Topic == topic && len(e.ID) == 32 && e.Latency > 0 }, 4},
		{"handled", msg.EventHandle, ok, 3}, // ok, dup (first), retry (second)
		{"handled twice", msg.EventHandle, isDup, 1},
		{"failed handles", msg.EventHandle, failed, 2}, // poison, retry (first)
		{"dead letters", msg.EventDeadLetter, func(e msg.Event) bool {
			return e.Consumer == "billing" && e.Deliveries == 1 && e.Err != nil && strings.Contains(e.Err.Error(), "cannot bill")
		}, 1},
	} {
		if n := evs.count(c.kind, c.f); n != c.want {
			t.Errorf("%s: %d events, want %d; all: %+v", c.what, n, c.want, evs.all)
		}
	}
}
