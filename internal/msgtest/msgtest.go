// Package msgtest makes real dead letters for tests of the tools that
// list, replay and discard them (an App's admin routes, the CLI, the
// console).
package msgtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/msg"
)

// Poison is a consumer whose handler fails every message permanently
// ("cannot handle <payload>"), so that it goes to the dead letters at
// once, until Heal; then it handles them and counts them by payload.
type Poison struct {
	healed  atomic.Bool
	mu      sync.Mutex
	handled map[string]int
}

// Heal makes the handler succeed from now on.
func (p *Poison) Heal() { p.healed.Store(true) }

// Handled returns how many times the healed handler handled payload.
func (p *Poison) Handled(payload string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.handled[payload]
}

// WaitHandled waits, at most 10 seconds, until payload was handled.
func (p *Poison) WaitHandled(t *testing.T, payload string) {
	t.Helper()
	for i := 0; p.Handled(payload) == 0; i++ {
		if i == 1000 {
			t.Fatalf("%s was not handled again within 10s", payload)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// DeadLetters subscribes a Poison named consumer to topic on node, with
// its inbox in store, publishes one message per payload (keyed by it)
// through an outbox in store and its relay, and waits (at most 10
// seconds) until the dead letters hold one per payload, which it returns
// with the Poison. Everything stops at the test's end.
func DeadLetters(ctx context.Context, t *testing.T, node *coord.Node, store *localstore.Store, consumer, topic string, payloads ...string) (*Poison, []msg.DeadLetter) {
	t.Helper()
	p := &Poison{handled: map[string]int{}}
	ms := msg.Badger(store)
	ob := msg.NewOutbox(ms)
	relay := msg.StartRelay(node, ob)
	t.Cleanup(func() { _ = relay.Close() })
	sub, err := msg.Subscribe(ctx, node, ms, consumer, topic, func(_ context.Context, _ *localstore.Tx, d *msg.Delivery) error {
		if !p.healed.Load() {
			return msg.Permanent(fmt.Errorf("cannot handle %s", d.Payload))
		}
		p.mu.Lock()
		p.handled[string(d.Payload)]++
		p.mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	for _, pl := range payloads {
		if err := store.Update(func(tx *localstore.Tx) error {
			_, err := ob.Add(ctx, tx, msg.Message{Topic: topic, Key: pl, Payload: []byte(pl)})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		ob.Notify()
	}
	var dls []msg.DeadLetter
	for i := 0; len(dls) < len(payloads); i++ {
		if i == 1000 {
			t.Fatalf("dead letters %+v, want %d", dls, len(payloads))
		}
		time.Sleep(10 * time.Millisecond)
		if dls, err = msg.DeadLetters(ctx, node, 0, msg.MaxListed); err != nil {
			t.Fatal(err)
		}
	}
	return p, dls
}
