package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/msg"
)

// TestDeadLetters drives the dead-letters command against a real node
// that listens for NATS clients, with dead letters a real consumer made:
// list shows them, replay of one brings it back to its consumer (which
// now handles it), a second replay of it and a malformed sequence fail
// with a clear error, wrong credentials fail, and discard -all empties
// the stream.
func TestDeadLetters(t *testing.T) {
	const password = "dlq-secret"
	node := nodetest.Open(t, coord.WithListen("127.0.0.1:-1"), coord.WithListenAuth("concord", password))
	ctx := nodetest.Within(t, 60*time.Second)
	var healed atomic.Bool
	var mu sync.Mutex
	handled := map[string]int{}
	dls := deadLetters(t, ctx, node, "billing", []string{"order-1", "order-2", "order-3"}, func(d *msg.Delivery) error {
		if !healed.Load() {
			return fmt.Errorf("cannot bill %s", d.Payload)
		}
		mu.Lock()
		handled[string(d.Payload)]++
		mu.Unlock()
		return nil
	})

	dl := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, append([]string{"dead-letters", "-nats", node.ClientURL(), "-password", password, "-timeout", "20s"}, args...), &out, io.Discard)
		return out.String(), err
	}
	out, err := dl("list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SEQ", "billing", "orders.placed", "order-2", "cannot bill order-3", dls[0].ID} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	out, err = dl("list", "-json")
	var listed []msg.DeadLetter
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 3 {
		t.Fatalf("list -json: %v\n%s", err, out)
	}
	// Listed in dead-letter order, which is not the publish order: the
	// consumers' partitions give up independently.
	var payloads []string
	for _, l := range listed {
		payloads = append(payloads, string(l.Payload))
	}
	if slices.Sort(payloads); !slices.Equal(payloads, []string{"order-1", "order-2", "order-3"}) {
		t.Fatalf("list -json: payloads %v\n%s", payloads, out)
	}

	healed.Store(true)
	first := slices.IndexFunc(dls, func(d msg.DeadLetter) bool { return string(d.Payload) == "order-1" })
	if first < 0 {
		t.Fatalf("no dead letter of order-1 in %+v", dls)
	}
	seq := fmt.Sprint(dls[first].Seq)
	if out, err := dl("replay", seq); err != nil || out != "replayed dead letter "+seq+"\n" {
		t.Fatalf("replay %s: %q, %v", seq, out, err)
	}
	for i := 0; ; i++ {
		mu.Lock()
		n := handled["order-1"]
		mu.Unlock()
		if n == 1 {
			break
		}
		if i == 1000 {
			t.Fatal("the replayed message was not handled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := dl("replay", seq); err == nil || !strings.Contains(err.Error(), "dead letter "+seq+" not found") {
		t.Errorf("second replay: %v, want not found", err)
	}
	var uerr usageError
	if _, err := dl("replay", "x"); !errors.As(err, &uerr) {
		t.Errorf("replay x: %v, want a usage error", err)
	}
	if err := run(ctx, []string{"dead-letters", "-nats", node.ClientURL(), "-password", "wrong", "-timeout", "5s", "list"}, io.Discard, io.Discard); err == nil {
		t.Error("list with a wrong password succeeded")
	}
	if out, err := dl("discard", "-all"); err != nil || out != "discarded 2 dead letters\n" {
		t.Fatalf("discard -all: %q, %v", out, err)
	}
	if out, err := dl("list"); err != nil || out != "no dead letters\n" {
		t.Fatalf("list after discard: %q, %v", out, err)
	}
	if out, err := dl("replay", "-all"); err != nil || out != "replayed 0 dead letters\n" {
		t.Fatalf("replay -all of none: %q, %v", out, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if handled["order-1"] != 1 || handled["order-2"]+handled["order-3"] != 0 {
		t.Errorf("handled %v, want only order-1, once", handled)
	}
}

// deadLetters subscribes consumer to orders.placed with h (whose errors
// are permanent), publishes one message per payload (keyed by it)
// through a Badger outbox and its relay, and returns the dead letters
// once there is one per payload. Everything stops at the test's end.
func deadLetters(t *testing.T, ctx context.Context, node *coord.Node, consumer string, payloads []string, h func(*msg.Delivery) error) []msg.DeadLetter {
	t.Helper()
	db, err := localstore.Open(t.TempDir(), localstore.WithGCInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	store := msg.Badger(db)
	ob := msg.NewOutbox(store)
	relay := msg.StartRelay(node, ob)
	t.Cleanup(func() { _ = relay.Close() })
	sub, err := msg.Subscribe(ctx, node, store, consumer, "orders.placed", func(_ context.Context, _ *localstore.Tx, d *msg.Delivery) error {
		return msg.Permanent(h(d))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	for _, p := range payloads {
		if err := db.Update(func(tx *localstore.Tx) error {
			_, err := ob.Add(ctx, tx, msg.Message{Topic: "orders.placed", Key: p, Payload: []byte(p)})
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
	return dls
}

// TestDeadLettersReplayAll replays every dead letter at once.
func TestDeadLettersReplayAll(t *testing.T) {
	node := nodetest.Open(t, coord.WithListen("127.0.0.1:-1"), coord.WithInsecureListenNoAuth())
	ctx := nodetest.Within(t, 60*time.Second)
	var healed atomic.Bool
	var count atomic.Int64
	payloads := []string{"0", "1", "2", "3", "4"}
	deadLetters(t, ctx, node, "audit", payloads, func(*msg.Delivery) error {
		if !healed.Load() {
			return errors.New("down")
		}
		count.Add(1)
		return nil
	})
	healed.Store(true)
	var out bytes.Buffer
	if err := run(ctx, []string{"dead-letters", "replay", "-all", "-nats", node.ClientURL(), "-user", "", "-password", ""}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	n := len(payloads)
	if out.String() != fmt.Sprintf("replayed %d dead letters\n", n) {
		t.Fatalf("output %q", out.String())
	}
	for i := 0; count.Load() < int64(n); i++ {
		if i == 1000 {
			t.Fatalf("handled %d of %d replayed messages", count.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDeadLettersUsage(t *testing.T) {
	for _, args := range [][]string{
		{"dead-letters"}, {"dead-letters", "frob"}, {"dead-letters", "replay"}, {"dead-letters", "discard", "1", "2"},
		{"dead-letters", "replay", "0"}, {"dead-letters", "list", "3"}, {"dead-letters", "replay", "-all", "3"},
	} {
		err := run(t.Context(), args, io.Discard, io.Discard)
		var uerr usageError
		if !errors.As(err, &uerr) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
	// A server that is not there: a clear error, within the timeout.
	err := run(t.Context(), []string{"dead-letters", "-nats", "nats://127.0.0.1:1", "-timeout", "3s", "list"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "cannot reach nats://127.0.0.1:1") {
		t.Errorf("unreachable server: %v", err)
	}
}

// TestDeadLettersThroughAdmin drives the dead-letters command without
// -nats: through the admin listener of an App in embedded mode, which
// has no NATS listener, with the App's admin credential. list shows the
// dead letters, replay of one brings it back to its consumer, a second
// replay fails with a clear error, a wrong token is refused, and discard
// -all empties the stream.
func TestDeadLettersThroughAdmin(t *testing.T) {
	dataDir := t.TempDir()
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"), concord.WithDataDir(dataDir),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0))
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	adminAddr, err := app.AdminAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node, err := app.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var healed atomic.Bool
	var mu sync.Mutex
	handled := map[string]int{}
	dls := deadLetters(t, ctx, node, "billing", []string{"order-1", "order-2"}, func(d *msg.Delivery) error {
		if !healed.Load() {
			return fmt.Errorf("cannot bill %s", d.Payload)
		}
		mu.Lock()
		handled[string(d.Payload)]++
		mu.Unlock()
		return nil
	})
	admin := "http://" + adminAddr.String()
	creds := filepath.Join(dataDir, concord.AdminCredentialsFile)
	dl := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, append([]string{"dead-letters", "-addr", admin, "-creds", creds, "-timeout", "20s"}, args...), &out, io.Discard)
		return out.String(), err
	}

	out, err := dl("list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SEQ", "billing", "orders.placed", "order-2", "cannot bill order-1", dls[0].ID} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	out, err = dl("list", "-json", "-limit", "1")
	var listed []struct {
		Seq     uint64 `json:"seq"`
		Payload string `json:"payload_base64"`
	}
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 1 || listed[0].Seq != dls[0].Seq {
		t.Fatalf("list -json -limit 1: %v\n%s", err, out)
	}

	healed.Store(true)
	first := slices.IndexFunc(dls, func(d msg.DeadLetter) bool { return string(d.Payload) == "order-1" })
	seq := fmt.Sprint(dls[first].Seq)
	if out, err := dl("replay", seq); err != nil || out != "replayed dead letter "+seq+"\n" {
		t.Fatalf("replay %s: %q, %v", seq, out, err)
	}
	for i := 0; ; i++ {
		mu.Lock()
		n := handled["order-1"]
		mu.Unlock()
		if n == 1 {
			break
		}
		if i == 1000 {
			t.Fatal("the replayed message was not handled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := dl("replay", seq); err == nil || !strings.Contains(err.Error(), "dead letter "+seq+" not found") {
		t.Errorf("second replay: %v, want not found", err)
	}

	// A token the App does not know.
	wrong := filepath.Join(t.TempDir(), "wrong.creds")
	if err := os.WriteFile(wrong, []byte("admin 0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = run(ctx, []string{"dead-letters", "-addr", admin, "-creds", wrong, "list"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "admin credential is required") {
		t.Errorf("list with a wrong token: %v", err)
	}
	// The modes do not mix.
	var uerr usageError
	for _, args := range [][]string{
		{"dead-letters", "-addr", admin, "-creds", creds, "-password", "x", "list"},
		{"dead-letters", "-nats", "nats://127.0.0.1:1", "-addr", admin, "list"},
		{"dead-letters", "-nats", "nats://127.0.0.1:1", "-as", "admin", "list"},
		{"dead-letters", "-addr", admin, "-creds", creds, "list", "-limit", "501"},
	} {
		if err := run(ctx, args, io.Discard, io.Discard); !errors.As(err, &uerr) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}

	if out, err := dl("discard", "-all"); err != nil || out != "discarded 1 dead letters\n" {
		t.Fatalf("discard -all: %q, %v", out, err)
	}
	if out, err := dl("list"); err != nil || out != "no dead letters\n" {
		t.Fatalf("list after discard: %q, %v", out, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if handled["order-1"] != 1 || handled["order-2"] != 0 {
		t.Errorf("handled %v, want only order-1, once", handled)
	}
}
