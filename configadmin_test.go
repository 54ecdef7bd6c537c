package concord_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/config"
	"github.com/concordrpc/concord/internal/nodetest"
	v1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1"
)

// adminCall sends one request to an App's admin listener and returns the
// status code and the decoded JSON answer.
func adminCall(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Concord-Writer", "ops")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	var out map[string]any
	if len(data) > 0 && data[0] == '{' {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, data)
		}
	}
	return res.StatusCode, out
}

// TestConfigAdminRoutes: the admin listener serves a config by an escaped
// name holding "/", needs expect on writes, bounds the body, and answers
// 503 while coordination is unavailable.
func TestConfigAdminRoutes(t *testing.T) {
	quiet := concord.WithLogger(slog.New(slog.DiscardHandler))
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"), concord.WithDataDir(t.TempDir()), quiet)
	h := concord.Config(app, "staging/echo", &v1.EchoRequest{Text: "default"})
	startApp(t, app)
	ctx := nodetest.Within(t, 30*time.Second)
	admin, err := app.AdminAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Node(ctx); err != nil {
		t.Fatal(err)
	}
	base := "http://" + admin.String() + concord.ConfigPath
	if code, out := adminCall(t, http.MethodPut, base+"staging%2Fecho", `{"text":"x"}`); code != http.StatusBadRequest || !strings.Contains(out["error"].(string), "expect is required") {
		t.Fatalf("PUT without expect: %d %v", code, out)
	}
	big := `{"text":"` + strings.Repeat("a", 4*config.MaxValueSize) + `"}`
	if code, _ := adminCall(t, http.MethodPut, base+"staging%2Fecho?expect=0", big); code != http.StatusBadRequest {
		t.Fatalf("PUT of an oversized body: %d", code)
	}
	code, out := adminCall(t, http.MethodPut, base+"staging%2Fecho?expect=0", `{"text":"live"}`)
	if code != http.StatusOK || out["version"] == nil {
		t.Fatalf("PUT: %d %v", code, out)
	}
	code, out = adminCall(t, http.MethodGet, base+"staging%2Fecho", "")
	if code != http.StatusOK || out["name"] != "staging/echo" || out["writer"] != "ops" || out["type"] != "concordtest.v1.EchoRequest" ||
		out["value"].(map[string]any)["text"] != "live" {
		t.Fatalf("GET: %d %v", code, out)
	}
	if err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for h.Get().GetText() != "live" {
		if ctx.Err() != nil {
			t.Fatalf("the handle did not see the write: %q", h.Get().GetText())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, out = adminCall(t, http.MethodPut, base+"staging%2Fecho?expect=0", `{"text":"again"}`); code != http.StatusConflict || out["current"] == nil {
		t.Fatalf("stale PUT: %d %v", code, out)
	}
	if code, _ = adminCall(t, http.MethodPost, base+"staging%2Fecho/rollback?version=1", ""); code != http.StatusBadRequest {
		t.Fatalf("rollback without expect: %d", code)
	}

	// An App whose coordination is unreachable answers 503.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "nats://" + ln.Addr().String()
	ln.Close()
	down := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"), concord.WithDataDir(t.TempDir()), quiet,
		concord.WithCoordOptions(coord.WithClient([]string{dead}, nodetest.ClientAuth())))
	startApp(t, down)
	downAdmin, err := down.AdminAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if code, out = adminCall(t, http.MethodGet, "http://"+downAdmin.String()+concord.ConfigPath+"greeter", ""); code != http.StatusServiceUnavailable || out["error"] == nil {
		t.Fatalf("GET without coordination: %d %v", code, out)
	}
}
