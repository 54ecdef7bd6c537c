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
	"testing"
	"time"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/internal/msgtest"
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
	p, dls := deadLetters(ctx, t, node, "billing", "order-1", "order-2", "order-3")

	dl := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, append([]string{"dead-letters", "-nats", node.ClientURL(), "-password", password, "-timeout", "20s"}, args...), &out, io.Discard)
		return out.String(), err
	}
	out, err := dl("list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SEQ", "billing", "orders.placed", "order-2", "cannot handle order-3", dls[0].ID} {
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

	seq := replayOrder1(t, p, dls, dl)
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
	if p.Handled("order-1") != 1 || p.Handled("order-2")+p.Handled("order-3") != 0 {
		t.Errorf("handled order-1, 2, 3: %d, %d, %d times, want only order-1, once", p.Handled("order-1"), p.Handled("order-2"), p.Handled("order-3"))
	}
}

// replayOrder1 heals p, replays the dead letter of order-1 with dl, waits
// until p handled it and returns its sequence.
func replayOrder1(t *testing.T, p *msgtest.Poison, dls []msg.DeadLetter, dl func(...string) (string, error)) string {
	t.Helper()
	p.Heal()
	first := slices.IndexFunc(dls, func(d msg.DeadLetter) bool { return string(d.Payload) == "order-1" })
	if first < 0 {
		t.Fatalf("no dead letter of order-1 in %+v", dls)
	}
	seq := fmt.Sprint(dls[first].Seq)
	if out, err := dl("replay", seq); err != nil || out != "replayed dead letter "+seq+"\n" {
		t.Fatalf("replay %s: %q, %v", seq, out, err)
	}
	p.WaitHandled(t, "order-1")
	return seq
}

// deadLetters makes one dead letter per payload on node with msgtest,
// the consumer's inbox and the outbox in a Badger store of their own.
func deadLetters(ctx context.Context, t *testing.T, node *coord.Node, consumer string, payloads ...string) (*msgtest.Poison, []msg.DeadLetter) {
	t.Helper()
	db, err := localstore.Open(t.TempDir(), localstore.WithGCInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return msgtest.DeadLetters(ctx, t, node, db, consumer, "orders.placed", payloads...)
}

// TestDeadLettersReplayAll replays every dead letter at once.
func TestDeadLettersReplayAll(t *testing.T) {
	node := nodetest.Open(t, coord.WithListen("127.0.0.1:-1"), coord.WithInsecureListenNoAuth())
	ctx := nodetest.Within(t, 60*time.Second)
	payloads := []string{"0", "1", "2", "3", "4"}
	p, _ := deadLetters(ctx, t, node, "audit", payloads...)
	p.Heal()
	var out bytes.Buffer
	if err := run(ctx, []string{"dead-letters", "replay", "-all", "-nats", node.ClientURL(), "-user", "", "-password", ""}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	n := len(payloads)
	if out.String() != fmt.Sprintf("replayed %d dead letters\n", n) {
		t.Fatalf("output %q", out.String())
	}
	for _, pl := range payloads {
		p.WaitHandled(t, pl)
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
	_, admin := runApp(t, app)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	node, err := app.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	local, err := app.Local(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, dls := msgtest.DeadLetters(ctx, t, node, local, "billing", "orders.placed", "order-1", "order-2")
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
	for _, want := range []string{"SEQ", "billing", "orders.placed", "order-2", "cannot handle order-1", dls[0].ID} {
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

	seq := replayOrder1(t, p, dls, dl)
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
	if p.Handled("order-1") != 1 || p.Handled("order-2") != 0 {
		t.Errorf("handled order-1 %d and order-2 %d times, want only order-1, once", p.Handled("order-1"), p.Handled("order-2"))
	}
}
