package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/concordrpc/concord/internal/syncbuf"
	concordv1 "github.com/concordrpc/concord/proto/concord/v1"
)

func TestProtoDeps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "include")
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"proto-deps", dir}, &stdout, &stderr); err != nil {
		t.Fatalf("proto-deps: %v\n%s", err, stderr.String())
	}
	validate, err := os.ReadFile(filepath.Join(dir, "buf", "validate", "validate.proto"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(validate, []byte("package buf.validate;")) {
		t.Fatal("validate.proto does not declare package buf.validate")
	}
	options, err := os.ReadFile(filepath.Join(dir, "concord", "v1", "options.proto"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(options, concordv1.OptionsProtoSource()) {
		t.Fatal("options.proto differs from the embedded source")
	}
	// -skip-concord leaves options.proto out.
	dir2 := t.TempDir()
	if err := run(t.Context(), []string{"proto-deps", "-skip-concord", dir2}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir2, "concord")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("-skip-concord wrote concord/: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"proto-deps"}, {"proto-deps", "a", "b"}, {"proto-deps", "-nope", "a"}} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), args, &stdout, &stderr)
		var uerr usageError
		if !errors.As(err, &uerr) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"version"}, &stdout, &stdout); err != nil || strings.TrimSpace(stdout.String()) == "" {
		t.Fatalf("version: %v %q", err, stdout.String())
	}
}

func TestNodeAndStatus(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	httpAddr := freeAddr(t)
	out := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"node", "-data", t.TempDir(), "-name", "n1", "-listen", "127.0.0.1:-1", "-password", "node-secret", "-http", httpAddr}, out, io.Discard)
	}()
	var status bytes.Buffer
	var err error
	for i := 0; i < 200; i++ { // up to 10s for the node to come up
		status.Reset()
		if err = run(ctx, []string{"status", "-addr", httpAddr}, &status, io.Discard); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("status: %v (node output %q)", err, out.String())
	}
	for _, want := range []string{"mode:        embedded", "meta leader: n1", "KV_concord_locks", "CONCORD_TXLOG"} {
		if !strings.Contains(status.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, status.String())
		}
	}
	if !strings.Contains(out.String(), "concord node n1 ready") || !strings.Contains(out.String(), " console=http://"+httpAddr+"/console/") {
		t.Errorf("node output %q, want the ready line with the console's URL", out.String())
	}
	// The web console, beside the status it reads.
	res, err := http.Get("http://" + httpAddr + "/console/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	// A node has no dead-letter routes: its console names the CLI instead.
	if res.StatusCode != 200 || !strings.Contains(string(page), `data-status="/concord/status"`) ||
		!strings.Contains(string(page), `data-dead-letters=""`) || !strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("GET /console/: %d, CSP %q, page:\n%s", res.StatusCode, res.Header.Get("Content-Security-Policy"), page)
	}
	// Its coordination metrics, read from the same status.
	res, err = http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scrape, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(scrape), "\nconcord_coord_up 1\n") ||
		!strings.Contains(string(scrape), `concord_coord_meta_leader_info{leader="n1"} 1`) {
		t.Errorf("GET /metrics: %d:\n%s", res.StatusCode, scrape)
	}
	if problems, err := promlint.New(bytes.NewReader(scrape)).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("promlint on the node's metrics: %v %+v", err, problems)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("node: %v", err)
	}
	// A node that listens needs client credentials.
	t.Setenv("CONCORD_NATS_PASSWORD", "")
	err = run(t.Context(), []string{"node", "-data", t.TempDir(), "-listen", "127.0.0.1:-1", "-http", ""}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "CONCORD_NATS_PASSWORD") {
		t.Fatalf("node without client credentials: %v, want an error naming CONCORD_NATS_PASSWORD", err)
	}
	// Each error names its cause.
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"cluster without a route password", []string{"node", "-data", dir, "-password", "p", "-http", "", "-cluster", "127.0.0.1:-1"}, "CONCORD_ROUTE_PASSWORD"},
		{"bad log level", []string{"node", "-data", dir, "-log-level", "loud"}, "-log-level"},
		{"stray argument", []string{"node", "extra"}, "flags only"},
		{"data directory under a file", []string{"node", "-data", filepath.Join(writeFile(t), "data"), "-password", "p", "-listen", "127.0.0.1:-1", "-http", ""}, "not a directory"},
	} {
		t.Setenv("CONCORD_ROUTE_PASSWORD", "")
		err := run(t.Context(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	// An HTTP server that is not a status endpoint: a clear error.
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	if err := run(t.Context(), []string{"status", "-addr", strings.TrimPrefix(other.URL, "http://")}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("status of a server without the endpoint: %v, want an error naming the 404", err)
	}
	// Nothing listening: a clear error, not a hang.
	if err := run(t.Context(), []string{"status", "-addr", freeAddr(t)}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("status of nothing: %v", err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// writeFile creates an empty regular file and returns its path.
func writeFile(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
