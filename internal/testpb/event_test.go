package testpb_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/internal/nodetest"
	eventsv1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/events/v1"
	"github.com/concordrpc/concord/internal/testpb/gen/concordtest/events/v1/eventsv1concord"
	"github.com/concordrpc/concord/msg"
)

// TestEventHelpers publishes events through the generated PublishPinged in
// local transactions, one of them rolled back, and consumes them through
// SubscribePinged: each committed event arrives once, decoded, with its
// sender as the ordering key, and in order per key; the rolled-back one
// never does. A payload on the topic that does not decode goes to the dead
// letters without reaching the handler.
func TestEventHelpers(t *testing.T) {
	t.Parallel()
	ctx := nodetest.Within(t, 60*time.Second)
	node := nodetest.Open(t)
	db, err := localstore.Open(t.TempDir(), localstore.WithGCInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store := msg.Badger(db)
	outbox := msg.NewOutbox(store)
	relay := msg.StartRelay(node, outbox)
	defer relay.Close()

	if eventsv1concord.PingedTopic != "concord-test.pinged" {
		t.Errorf("PingedTopic = %q", eventsv1concord.PingedTopic)
	}
	errRollback := errors.New("roll back")
	publish := func(ev *eventsv1.Pinged, commit bool) {
		t.Helper()
		err := db.Update(func(tx *localstore.Tx) error {
			if _, err := eventsv1concord.PublishPinged(ctx, outbox, tx, ev); err != nil {
				return err
			}
			if !commit {
				return errRollback
			}
			return nil
		})
		if commit && err != nil || !commit && !errors.Is(err, errRollback) {
			t.Fatalf("publish %v (commit %v): %v", ev, commit, err)
		}
	}
	var sent []*eventsv1.Pinged
	for i := range 6 {
		ev := &eventsv1.Pinged{Sender: uint32(i % 2), Text: strings.Repeat("p", i+1)}
		publish(ev, true)
		sent = append(sent, ev)
	}
	publish(&eventsv1.Pinged{Sender: 1, Text: "rolled back"}, false)
	// A payload that is not a Pinged, then a last event as a fence: the
	// unordered partition has no order, so wait for both.
	if err := db.Update(func(tx *localstore.Tx) error {
		_, err := outbox.Add(ctx, tx, msg.Message{Topic: eventsv1concord.PingedTopic, Payload: []byte{0xff, 0xff}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	fence := &eventsv1.Pinged{Sender: 0, Text: "fence"}
	publish(fence, true)
	sent = append(sent, fence)

	got := make(chan *eventsv1.Pinged, 2*len(sent))
	sub, err := eventsv1concord.SubscribePinged(ctx, node, store, "testpb",
		func(_ context.Context, tx *localstore.Tx, ev *eventsv1.Pinged, d *msg.Delivery) error {
			if want := []string{"0", "1"}[ev.GetSender()]; d.Key != want {
				t.Errorf("event %v has key %q, want %q", ev, d.Key, want)
			}
			got <- ev
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	bySender := map[uint32][]string{}
	for range sent {
		select {
		case ev := <-got:
			bySender[ev.GetSender()] = append(bySender[ev.GetSender()], ev.GetText())
		case <-ctx.Done():
			t.Fatalf("received %v of %d events", bySender, len(sent))
		}
	}
	want := map[uint32][]string{}
	for _, ev := range sent {
		want[ev.GetSender()] = append(want[ev.GetSender()], ev.GetText())
	}
	for sender, texts := range want {
		if strings.Join(bySender[sender], ",") != strings.Join(texts, ",") {
			t.Errorf("sender %d: received %q, want %q in this order", sender, bySender[sender], texts)
		}
	}
	if _, err := eventsv1concord.SubscribePinged[*localstore.Tx](ctx, node, store, "testpb-nil", nil); !errors.Is(err, msg.ErrInvalid) {
		t.Errorf("SubscribePinged with a nil handler: %v, want msg.ErrInvalid", err)
	}

	// The undecodable payload is dead-lettered on its first delivery.
	var dead []msg.DeadLetter
	for len(dead) == 0 {
		if dead, err = msg.DeadLetters(ctx, node, 0, 10); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-got:
			t.Errorf("unexpected event %v", ev)
		case <-ctx.Done():
			t.Fatal("no dead letter")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if d := dead[0]; len(dead) != 1 || d.Consumer != "testpb" || d.Deliveries != 1 ||
		!strings.Contains(d.Error, "decode concordtest.events.v1.Pinged") || string(d.Payload) != "\xff\xff" {
		t.Errorf("dead letters %+v, want the undecodable payload, once, after one delivery", dead)
	}
}
