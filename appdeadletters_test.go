package concord_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/internal/msgtest"
	"github.com/concordrpc/concord/msg"
)

// deadLetterApp starts an App in embedded mode (no NATS listener) with
// an admin listener and, through its node and local store, a consumer of
// topic that turns one message per payload into a dead letter. It returns
// the consumer, the dead letters, the admin token and the URL of the
// dead-letter routes. The App stops at the test's end.
func deadLetterApp(ctx context.Context, t *testing.T, topic string, payloads ...string) (*msgtest.Poison, []msg.DeadLetter, string, string) {
	t.Helper()
	dir := t.TempDir()
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"), concord.WithDataDir(dir),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0))
	startApp(t, app)
	admin := adminReady(ctx, t, app)
	p, dls := appDeadLetters(ctx, t, app, "billing", topic, payloads...)
	return p, dls, adminToken(t, dir), "http://" + admin.String() + concord.DeadLettersPath
}

// appDeadLetters makes dead letters with msgtest on app's node and local
// store.
func appDeadLetters(ctx context.Context, t *testing.T, app *concord.App, consumer, topic string, payloads ...string) (*msgtest.Poison, []msg.DeadLetter) {
	t.Helper()
	node, err := app.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	local, err := app.Local(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return msgtest.DeadLetters(ctx, t, node, local, consumer, topic, payloads...)
}

// TestDeadLetterAdminRoutes drives the dead-letter routes of an App in
// embedded mode (no NATS listener) against real dead letters: they need
// the admin credential, validate every parameter, list the dead letters
// with their details and a bounded payload, replay one back to its
// consumer (which now handles it), refuse a second replay, and discard
// the rest.
func TestDeadLetterAdminRoutes(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	p, dls, token, base := deadLetterApp(ctx, t, "orders.placed", "order-1", "order-2")

	// The credential.
	for _, tc := range []struct{ method, url, token string }{
		{http.MethodGet, base, ""},
		{http.MethodGet, base, "wrong"},
		{http.MethodPost, base + fmt.Sprintf("/%d/replay", dls[0].Seq), ""},
		{http.MethodPost, base + "/all/discard", "wrong"},
	} {
		if code, out := adminCall(t, tc.token, tc.method, tc.url, ""); code != http.StatusUnauthorized || out["error"] == nil {
			t.Errorf("%s %s with token %q: %d %v, want 401", tc.method, tc.url, tc.token, code, out)
		}
	}
	// Parameters.
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "?limit=0"},
		{http.MethodGet, "?limit=501"},
		{http.MethodGet, "?limit=-1"},
		{http.MethodGet, "?limit=1e3"},
		{http.MethodGet, "?limit=5&limit=6"},
		{http.MethodGet, "?from=0"},
		{http.MethodGet, "?from=%2B1"},
		{http.MethodGet, "?from=18446744073709551616"},
		{http.MethodGet, "?frm=1"},
		{http.MethodPost, "/0/replay"},
		{http.MethodPost, "/01/replay"},
		{http.MethodPost, "/-1/discard"},
		{http.MethodPost, "/%2B1/discard"},
		{http.MethodPost, "/1%20/discard"},
		{http.MethodPost, "/x/replay"},
		{http.MethodPost, "/ALL/replay"},
		{http.MethodPost, "/99999999999999999999999/replay"},
		{http.MethodPost, "/1/replay?force=1"},
	} {
		if code, out := adminCall(t, token, tc.method, base+tc.path, ""); code != http.StatusBadRequest || out["error"] == nil {
			t.Errorf("%s %s: %d %v, want 400", tc.method, tc.path, code, out)
		}
	}
	if code, _ := adminCall(t, token, http.MethodPost, base+"/1/frob", ""); code != http.StatusNotFound {
		t.Errorf("POST /1/frob: %d, want 404", code)
	}

	// The list.
	code, out := adminCall(t, token, http.MethodGet, base, "")
	listed, _ := out["dead_letters"].([]any)
	if code != http.StatusOK || len(listed) != 2 || out["next"] != nil {
		t.Fatalf("list: %d %v", code, out)
	}
	byPayload := map[string]map[string]any{}
	for _, l := range listed {
		d := l.(map[string]any)
		byPayload[d["key"].(string)] = d
	}
	first := byPayload["order-1"]
	if first == nil || first["consumer"] != "billing" || first["topic"] != "orders.placed" || first["payload_base64"] != "b3JkZXItMQ==" ||
		first["payload_size"] != float64(7) || !strings.Contains(first["error"].(string), "cannot handle order-1") ||
		first["deliveries"] != float64(1) || first["id"] == "" || first["time"] == nil {
		t.Errorf("list entry of order-1: %v", first)
	}
	if code, out := adminCall(t, token, http.MethodGet, base+"?limit=1", ""); code != http.StatusOK || len(out["dead_letters"].([]any)) != 1 || out["next"] == nil {
		t.Errorf("list ?limit=1: %d %v, want one and a next", code, out)
	}
	if code, out := adminCall(t, token, http.MethodGet, base+"?from=18446744073709551615", ""); code != http.StatusOK || len(out["dead_letters"].([]any)) != 0 {
		t.Errorf("list from the last sequence: %d %v, want none", code, out)
	}

	// Replay one: it goes back to its topic and the consumer, healed,
	// handles it.
	p.Heal()
	seq := uint64(first["seq"].(float64))
	replay := base + fmt.Sprintf("/%d/replay", seq)
	if code, out := adminCall(t, token, http.MethodPost, replay, ""); code != http.StatusOK || out["done"] != float64(1) {
		t.Fatalf("replay %d: %d %v", seq, code, out)
	}
	p.WaitHandled(t, "order-1")
	if code, out := adminCall(t, token, http.MethodPost, replay, ""); code != http.StatusNotFound || !strings.Contains(out["error"].(string), "not found") {
		t.Errorf("second replay: %d %v, want 404", code, out)
	}
	if code, _ := adminCall(t, token, http.MethodPost, base+fmt.Sprintf("/%d/discard", seq), ""); code != http.StatusNotFound {
		t.Errorf("discard of the replayed one: %d, want 404", code)
	}

	// Discard the rest: gone, and never handled.
	if code, out := adminCall(t, token, http.MethodPost, base+"/all/discard", ""); code != http.StatusOK || out["done"] != float64(1) {
		t.Fatalf("discard all: %d %v", code, out)
	}
	if code, out := adminCall(t, token, http.MethodGet, base, ""); code != http.StatusOK || len(out["dead_letters"].([]any)) != 0 {
		t.Fatalf("list after discard: %d %v", code, out)
	}
	if code, out := adminCall(t, token, http.MethodPost, base+"/all/replay", ""); code != http.StatusOK || out["done"] != float64(0) {
		t.Fatalf("replay all of none: %d %v", code, out)
	}
	time.Sleep(100 * time.Millisecond)
	if p.Handled("order-1") != 1 || p.Handled("order-2") != 0 {
		t.Errorf("handled order-1 %d times and order-2 %d times, want 1 and 0", p.Handled("order-1"), p.Handled("order-2"))
	}
}

// TestDeadLetterAdminReplayAll replays every dead letter with one call.
func TestDeadLetterAdminReplayAll(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	payloads := []string{"a", "b", "c"}
	p, _, token, base := deadLetterApp(ctx, t, "audit.events", payloads...)
	p.Heal()
	code, out := adminCall(t, token, http.MethodPost, base+"/all/replay", "")
	if code != http.StatusOK || out["done"] != float64(len(payloads)) || out["more"] != nil {
		t.Fatalf("replay all: %d %v", code, out)
	}
	for _, pl := range payloads {
		p.WaitHandled(t, pl)
	}
}
