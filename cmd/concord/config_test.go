package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/concordrpc/concord"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/rpc"
)

// runGreeter runs the greeter example's App on loopback ports, its
// template the live config "greeter", and returns its RPC and admin URLs.
func runGreeter(t *testing.T) (rpcURL, adminURL, dataDir string) {
	t.Helper()
	dataDir = t.TempDir()
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"), concord.WithDataDir(dataDir),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0))
	tpl := concord.Config(app, "greeter", &greeterv1.GreeterConfig{Template: greeter.DefaultTemplate})
	greeterv1concord.RegisterGreeterService(app, greeter.Service{Config: tpl})
	rpcURL, adminURL = runApp(t, app)
	return rpcURL, adminURL, dataDir
}

// runApp runs app until the test's end and returns its RPC and admin
// URLs once it serves them and its node is open.
func runApp(t *testing.T, app *concord.App) (rpcURL, adminURL string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	addr, err := app.Server().Addr(wctx)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := app.AdminAddr(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Node(wctx); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr.String(), "http://" + admin.String()
}

// TestConfigCommands drives `concord config` against a running greeter:
// a set changes the next greeting without a restart; an invalid value and
// a stale -expect are refused and change nothing; history lists the
// versions; rollback restores an earlier value as a new version.
func TestConfigCommands(t *testing.T) {
	rpcURL, admin, data := runGreeter(t)
	creds := filepath.Join(data, concord.AdminCredentialsFile)
	conn := rpc.NewConn(rpcURL)
	defer conn.Close()
	client := greeterv1concord.NewGreeterServiceClient(conn)
	greets := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			res, err := client.Greet(t.Context(), &greeterv1.GreetRequest{Name: "Ada"})
			if err == nil && res.GetGreeting() == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("Greet = %q, %v; want %q", res.GetGreeting(), err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(t.Context(), append([]string{"config", args[0], "-addr", admin, "-creds", creds}, args[1:]...), &out, io.Discard)
		return out.String(), err
	}
	code := func(err error) int {
		var serr *statusError
		if errors.As(err, &serr) {
			return serr.code
		}
		return 0
	}
	greets("Hello, Ada!")

	if _, err := cli("get", "greeter"); err == nil || !strings.Contains(err.Error(), "greeter has no version yet") {
		t.Fatalf("get before any version: %v", err)
	}
	out, err := cli("set", "greeter", `{"template":"Hi, {name}!"}`)
	if err != nil {
		t.Fatal(err)
	}
	var v1 uint64
	if _, err := fmt.Sscanf(out, "greeter: version %d, the first\n", &v1); err != nil {
		t.Fatalf("set printed %q: %v", out, err)
	}
	greets("Hi, Ada!")
	out, err = cli("get", "greeter")
	if err != nil || !strings.HasPrefix(out, `{"template":"Hi, {name}!"}`+"\n"+fmt.Sprintf("version %d (greeter.v1.GreeterConfig), written by admin at ", v1)) {
		t.Fatalf("get: %q, %v", out, err)
	}

	// Refused writes change nothing.
	_, err = cli("set", "greeter", `{"template":"Hi!"}`)
	if code(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "greeter: refused by the validation rules of its type, nothing written; violations:\n  template: does not contain substring `{name}`") {
		t.Fatalf("invalid set: %v", err)
	}
	if _, err = cli("set", "greeter", `{"greeting":"Hi, {name}!"}`); code(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "not a greeter.v1.GreeterConfig in protojson") {
		t.Fatalf("set of another shape: %v", err)
	}
	_, err = cli("set", "greeter", `{"template":"Yo {name}"}`, "-expect", fmt.Sprint(v1+100))
	if code(err) != http.StatusConflict || !strings.Contains(err.Error(), fmt.Sprintf("retry with -expect %d", v1)) {
		t.Fatalf("stale set: %v", err)
	}
	if out, err = cli("get", "greeter"); err != nil || !strings.Contains(out, fmt.Sprintf("version %d ", v1)) {
		t.Fatalf("a refused write changed the config: %q, %v", out, err)
	}

	out, err = cli("set", "greeter", `{"template":"Hey {name}."}`, "-expect", fmt.Sprint(v1))
	var v2, replaced uint64
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscanf(out, "greeter: version %d, replaced version %d\n", &v2, &replaced); err != nil || replaced != v1 || v2 <= v1 {
		t.Fatalf("set printed %q: %v", out, err)
	}
	greets("Hey Ada.")

	out, err = cli("history", "greeter")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "VERSION") ||
		!strings.HasPrefix(lines[1], fmt.Sprint(v2)) || !strings.HasSuffix(lines[1], `{"template":"Hey {name}."}`) ||
		!strings.HasPrefix(lines[2], fmt.Sprint(v1)) || !strings.Contains(lines[2], " admin ") {
		t.Fatalf("history:\n%s", out)
	}
	if out, err = cli("history", "greeter", "-limit", "1"); err != nil || strings.Count(out, "\n") != 2 {
		t.Fatalf("history -limit 1: %q, %v", out, err)
	}

	if _, err = cli("rollback", "greeter", fmt.Sprint(v1), "-expect", fmt.Sprint(v1)); code(err) != http.StatusConflict {
		t.Fatalf("stale rollback: %v", err)
	}
	out, err = cli("rollback", "greeter", fmt.Sprint(v1))
	var v3 uint64
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscanf(out, fmt.Sprintf("greeter: version %%d (the value of version %d), replaced version %d", v1, v2), &v3); err != nil || v3 <= v2 {
		t.Fatalf("rollback printed %q: %v", out, err)
	}
	greets("Hi, Ada!")
	if _, err = cli("rollback", "greeter", "1000000"); code(err) != http.StatusNotFound {
		t.Fatalf("rollback to a version never written: %v", err)
	}

	// A config this App has no handle on and no version of is unknown.
	if _, err = cli("set", "pricing", `{}`); code(err) != http.StatusNotFound {
		t.Fatalf("set of an unknown config: %v", err)
	}
	if _, err = cli("get", "bad..name"); code(err) != http.StatusBadRequest {
		t.Fatalf("get of a bad name: %v", err)
	}
	if err := run(t.Context(), []string{"config", "set", "greeter"}, io.Discard, io.Discard); !errors.As(err, new(usageError)) {
		t.Fatalf("set without JSON: %v", err)
	}

	// Without the App's credential nothing is read or written.
	wrong := filepath.Join(t.TempDir(), "wrong.creds")
	if err := os.WriteFile(wrong, []byte("admin 0123456789abcdef0123456789abcdef-wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"get", "greeter"}, {"set", "greeter", `{"template":"Owned, {name}"}`}} {
		err := run(t.Context(), append([]string{"config", args[0], "-addr", admin, "-creds", wrong}, args[1:]...), io.Discard, io.Discard)
		if code(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "admin credential is required") {
			t.Fatalf("config %s with a wrong credential: %v", args[0], err)
		}
	}
	err = run(t.Context(), []string{"config", "get", "-addr", admin, "-creds", filepath.Join(t.TempDir(), "none"), "greeter"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "admin credentials") || !strings.Contains(err.Error(), "-creds") {
		t.Fatalf("config get with no credentials file: %v", err)
	}
	greets("Hi, Ada!")
}
