package config_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/config"
	"github.com/concordrpc/concord/internal/nodetest"
	v1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1"
)

// TestSlowWatcherIsToldItSkipped: a watcher that does not read keeps only
// its buffer's newest versions, the first of them marked Skipped; the
// handle and Get are not held back.
func TestSlowWatcherIsToldItSkipped(t *testing.T) {
	node := nodetest.Open(t)
	ctx := nodetest.Within(t, 30*time.Second)
	s := config.NewStore(node)
	h := config.New(config.FromNode(node), nil, "slow", &v1.EchoRequest{Text: "d"}, config.WithWatchBuffer(2))
	t.Cleanup(func() { _ = h.Close() })
	waitLoaded(t, h)
	slow := h.Watch(ctx)
	var v uint64
	var err error
	for i := range 5 {
		if v, err = s.Set(ctx, "slow", &v1.EchoRequest{Text: fmt.Sprint(i)}, v, "w"); err != nil {
			t.Fatal(err)
		}
	}
	await(t, 5*time.Second, "the handle at the last version", func() bool { return h.Version() == v })
	// One update may be in the watcher's hands already; the rest of what
	// it did not read is the buffer's newest two.
	var got []config.Update[*v1.EchoRequest]
	for u := range slow {
		got = append(got, u)
		if u.Version == v {
			break
		}
	}
	skipped := false
	for i, u := range got {
		if i > 0 && u.Version <= got[i-1].Version {
			t.Fatalf("out of order: %d after %d", u.Version, got[i-1].Version)
		}
		skipped = skipped || u.Skipped
	}
	if len(got) > 4 || !skipped || got[len(got)-1].Value.GetText() != "4" {
		t.Fatalf("slow watcher with a buffer of 2 got %d updates (skipped told: %v), last %q", len(got), skipped, got[len(got)-1].Value.GetText())
	}
}

// TestCorruptVersionSkipped: a message in the bucket that is not a valid
// version (written by another tool) is skipped by handles, which keep
// their value, and refused by Store.Get with ErrCorrupt; the next valid
// version is delivered.
func TestCorruptVersionSkipped(t *testing.T) {
	node := nodetest.Open(t)
	ctx := nodetest.Within(t, 30*time.Second)
	s := config.NewStore(node)
	h := config.New(config.FromNode(node), nil, "c", &v1.EchoRequest{Text: "d"})
	t.Cleanup(func() { _ = h.Close() })
	v, err := s.Set(ctx, "c", &v1.EchoRequest{Text: "good"}, 0, "w")
	if err != nil {
		t.Fatal(err)
	}
	await(t, 5*time.Second, "the first version", func() bool { return h.Version() == v })
	ack, err := node.JetStream().Publish(ctx, "$KV."+coord.BucketConfig+".c", []byte(`{"type":"x.Y","value":"!!"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "c"); err == nil {
		t.Fatal("Get accepted a corrupt version")
	}
	v2, err := s.Set(ctx, "c", &v1.EchoRequest{Text: "again"}, ack.Sequence, "w")
	if err != nil {
		t.Fatal(err)
	}
	await(t, 5*time.Second, "the next valid version", func() bool { return h.Version() == v2 })
	if h.Get().GetText() != "again" {
		t.Fatalf("Get = %q", h.Get().GetText())
	}
}

// gateBackend hands out its node only once open is closed.
type gateBackend struct {
	node *coord.Node
	open chan struct{}
}

func (b gateBackend) Node(ctx context.Context) (*coord.Node, error) {
	select {
	case <-b.open:
		return b.node, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestCatchUpAfterOutage: a handle that starts from its local copy and
// then reaches the cluster delivers the versions written meanwhile, in
// order, not only the latest.
func TestCatchUpAfterOutage(t *testing.T) {
	node := nodetest.Open(t)
	local := openLocal(t, t.TempDir())
	ctx := nodetest.Within(t, 30*time.Second)
	s := config.NewStore(node)
	v, err := s.Set(ctx, "cu", &v1.EchoRequest{Text: "0"}, 0, "w")
	if err != nil {
		t.Fatal(err)
	}
	first := config.New(config.FromNode(node), config.FromStore(local), "cu", &v1.EchoRequest{Text: "d"})
	await(t, 5*time.Second, "the first version", func() bool { return first.Version() == v })
	_ = first.Close()
	want := []string{"0"}
	for i := 1; i <= 4; i++ { // written while no handle watches
		if v, err = s.Set(ctx, "cu", &v1.EchoRequest{Text: fmt.Sprint(i)}, v, "w"); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprint(i))
	}
	gate := gateBackend{node: node, open: make(chan struct{})}
	h := config.New(gate, config.FromStore(local), "cu", &v1.EchoRequest{Text: "d"})
	t.Cleanup(func() { _ = h.Close() })
	waitLoaded(t, h) // from the local copy
	updates := h.Watch(ctx)
	close(gate.open)
	var got []string
	for u := range updates {
		got = append(got, u.Value.GetText())
		if u.Version == v {
			break
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the outage the watcher saw %v, want %v", got, want)
	}
}
