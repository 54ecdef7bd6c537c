package concord_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/config"
	"github.com/concordrpc/concord/internal/admincreds"
	"github.com/concordrpc/concord/internal/nodetest"
	v1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1"
)

// adminToken returns the token of the only credential in the admin
// credentials file an App created in its data directory dir.
func adminToken(t *testing.T, dir string) string {
	t.Helper()
	cs, err := admincreds.Read(filepath.Join(dir, concord.AdminCredentialsFile))
	if err != nil || len(cs) != 1 || cs[0].Name != "admin" {
		t.Fatalf("admin credentials in %s: %+v, %v", dir, cs, err)
	}
	return cs[0].Token
}

// adminReady waits until app's admin listener serves and its node is
// open, and returns the listener's address.
func adminReady(ctx context.Context, t *testing.T, app *concord.App) net.Addr {
	t.Helper()
	admin, err := app.AdminAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Node(ctx); err != nil {
		t.Fatal(err)
	}
	return admin
}

// adminCall sends one request to an App's admin listener with token (none
// if "") and returns the status code and the decoded JSON answer.
func adminCall(t *testing.T, token, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
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
	dir := t.TempDir()
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"), concord.WithDataDir(dir), quiet)
	h := concord.Config(app, "staging/echo", &v1.EchoRequest{Text: "default"})
	startApp(t, app)
	ctx := nodetest.Within(t, 30*time.Second)
	admin := adminReady(ctx, t, app)
	base := "http://" + admin.String() + concord.ConfigPath
	token := adminToken(t, dir)
	if code, out := adminCall(t, token, http.MethodPut, base+"staging%2Fecho", `{"text":"x"}`); code != http.StatusBadRequest || !strings.Contains(out["error"].(string), "expect is required") {
		t.Fatalf("PUT without expect: %d %v", code, out)
	}
	big := `{"text":"` + strings.Repeat("a", 4*config.MaxValueSize) + `"}`
	if code, _ := adminCall(t, token, http.MethodPut, base+"staging%2Fecho?expect=0", big); code != http.StatusBadRequest {
		t.Fatalf("PUT of an oversized body: %d", code)
	}
	code, out := adminCall(t, token, http.MethodPut, base+"staging%2Fecho?expect=0", `{"text":"live"}`)
	if code != http.StatusOK || out["version"] == nil {
		t.Fatalf("PUT: %d %v", code, out)
	}
	code, out = adminCall(t, token, http.MethodGet, base+"staging%2Fecho", "")
	if code != http.StatusOK || out["name"] != "staging/echo" || out["writer"] != "admin" || out["type"] != "concordtest.v1.EchoRequest" ||
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
	if code, out = adminCall(t, token, http.MethodPut, base+"staging%2Fecho?expect=0", `{"text":"again"}`); code != http.StatusConflict || out["current"] == nil {
		t.Fatalf("stale PUT: %d %v", code, out)
	}
	if code, _ = adminCall(t, token, http.MethodPost, base+"staging%2Fecho/rollback?version=1", ""); code != http.StatusBadRequest {
		t.Fatalf("rollback without expect: %d", code)
	}

	// An App whose coordination is unreachable answers 503.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "nats://" + ln.Addr().String()
	ln.Close()
	downDir := t.TempDir()
	down := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"), concord.WithDataDir(downDir), quiet,
		concord.WithCoordOptions(coord.WithClient([]string{dead}, nodetest.ClientAuth())))
	startApp(t, down)
	downAdmin, err := down.AdminAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if code, out = adminCall(t, adminToken(t, downDir), http.MethodGet, "http://"+downAdmin.String()+concord.ConfigPath+"greeter", ""); code != http.StatusServiceUnavailable || out["error"] == nil {
		t.Fatalf("GET without coordination: %d %v", code, out)
	}
}

// TestConfigAdminCredentials: every config route needs a credential from
// the App's credentials file, read per request (rotation needs no
// restart); the credential's name is the recorded writer; status stays
// open; the generated default file is private; a missing named file
// answers 503, never lets a write through.
func TestConfigAdminCredentials(t *testing.T) {
	quiet := concord.WithLogger(slog.New(slog.DiscardHandler))
	const (
		opsToken = "ops-0123456789abcdef0123456789abcdef"
		botToken = "bot-0123456789abcdef0123456789abcdef"
	)
	creds := filepath.Join(t.TempDir(), "team.creds")
	if err := os.WriteFile(creds, []byte("ops "+opsToken+"\nci-bot "+botToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"), concord.WithDataDir(dir),
		concord.WithAdminCredentials(creds), quiet)
	concord.Config(app, "echo", &v1.EchoRequest{Text: "default"})
	startApp(t, app)
	ctx := nodetest.Within(t, 30*time.Second)
	admin := adminReady(ctx, t, app)
	if _, err := os.Stat(filepath.Join(dir, concord.AdminCredentialsFile)); !os.IsNotExist(err) {
		t.Fatalf("an App with WithAdminCredentials created the default file too: %v", err)
	}
	base := "http://" + admin.String() + concord.ConfigPath + "echo"

	// Refused without a valid credential, on reads and writes alike.
	for _, tok := range []string{"", "wrong-0123456789abcdef0123456789abcdef", opsToken + "x"} {
		for _, c := range []struct{ method, url string }{
			{http.MethodGet, base}, {http.MethodGet, base + "/history"},
			{http.MethodPut, base + "?expect=0"}, {http.MethodPost, base + "/rollback?version=1&expect=1"},
		} {
			if code, out := adminCall(t, tok, c.method, c.url, `{"text":"forged"}`); code != http.StatusUnauthorized || !strings.Contains(out["error"].(string), "admin credential is required") {
				t.Fatalf("%s %s with token %q: %d %v", c.method, c.url, tok, code, out)
			}
		}
	}
	if code, _ := adminCall(t, "", http.MethodGet, "http://"+admin.String()+concord.StatusPath, ""); code != http.StatusOK {
		t.Fatalf("status without a credential: %d", code)
	}

	// The credential's name is the writer.
	if code, out := adminCall(t, botToken, http.MethodPut, base+"?expect=0", `{"text":"by the bot"}`); code != http.StatusOK {
		t.Fatalf("PUT as ci-bot: %d %v", code, out)
	}
	if code, out := adminCall(t, opsToken, http.MethodGet, base, ""); code != http.StatusOK || out["writer"] != "ci-bot" {
		t.Fatalf("GET as ops: %d %v, want writer ci-bot", code, out)
	}

	// Rotation: ci-bot removed from the file is refused at once.
	if err := os.WriteFile(creds, []byte("ops "+opsToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _ := adminCall(t, botToken, http.MethodPut, base+"?expect=1", `{"text":"again"}`); code != http.StatusUnauthorized {
		t.Fatalf("PUT with a removed credential: %d", code)
	}
	// A missing file refuses everyone, with 503.
	if err := os.Remove(creds); err != nil {
		t.Fatal(err)
	}
	if code, _ := adminCall(t, opsToken, http.MethodPut, base+"?expect=1", `{"text":"again"}`); code != http.StatusServiceUnavailable {
		t.Fatalf("PUT with the credentials file gone: %d", code)
	}
	if code, out := adminCall(t, "", http.MethodGet, base, ""); code != http.StatusServiceUnavailable {
		t.Fatalf("GET with the credentials file gone: %d %v", code, out)
	}

	// The default file: created private, one credential named admin.
	dflt := t.TempDir()
	other := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"), concord.WithDataDir(dflt), quiet)
	startApp(t, other)
	if _, err := other.AdminAddr(ctx); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dflt, concord.AdminCredentialsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("default credentials file: %v, %v", fi, err)
	}
	adminToken(t, dflt)
}
