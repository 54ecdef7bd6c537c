package concord_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/internal/nodetest"
)

// statusStarting is the status error of an App whose first node is still
// opening (app.go's errStarting).
const statusStarting = "concord: coordination starting"

// TestAppStatusWithoutCoordination: while an App has no coordination node,
// its admin status endpoint answers at once, without waiting for one, with
// 503 and a JSON {"error": ...} saying why:
//
//   - nothing listens at the NATS URL: each attempt fails at once, and the
//     error names the URL and coord.ErrUnavailable (after, at most, a first
//     read that still says the node is starting);
//   - a server accepts the connection but never answers: the attempt hangs
//     for the client's 5s connect timeout, and meanwhile the endpoint says
//     that coordination is starting, then names the URL once it failed.
//
// Each read must answer within a second. This fails if serveStatus waits
// for a node (as the App's resolver does), answers 200 with an empty
// status, answers something other than the JSON error, or drops the cause.
func TestAppStatusWithoutCoordination(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  func(t *testing.T) (url string, stop func())
		// hangs: the first connection attempt hangs (for nats.go's 5s
		// connect timeout) rather than failing at once.
		hangs bool
	}{
		{"nothing listens", func(t *testing.T) (string, func()) { return "nats://" + freeAddr(t), func() {} }, false},
		{"server silent", silentServer, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, stopServer := tc.url(t)
			app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"), concord.WithDataDir(t.TempDir()),
				concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0),
				concord.WithCoordOptions(coord.WithClient([]string{url}, nodetest.ClientAuth())))
			started := time.Now()
			startApp(t, app)
			// Cleanups run last first: the server stops before the App,
			// which fails a hanging attempt at once rather than in 5s.
			t.Cleanup(stopServer)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			admin, err := app.AdminAddr(ctx)
			if err != nil {
				t.Fatal(err)
			}
			statusURL := "http://" + admin.String() + concord.StatusPath

			unavailable := func(e string) bool {
				return strings.Contains(e, coord.ErrUnavailable.Error()) && strings.Contains(e, url)
			}
			first := readStatusError(t, statusURL)
			switch {
			case tc.hangs && time.Since(started) < 4*time.Second:
				// The attempt cannot have failed yet: it waits up to 5s.
				if first != statusStarting {
					t.Fatalf("status while the first connection attempt hangs: %q, want %q", first, statusStarting)
				}
			case first != statusStarting && !unavailable(first):
				t.Fatalf("status error %q says neither %q nor why %s is unavailable", first, statusStarting, url)
			}

			// Once an attempt has failed, the answer names the URL. An
			// attempt fails within nats.go's 5s connect timeout.
			deadline := time.Now().Add(15 * time.Second)
			last := first
			for i := 0; !unavailable(last); i++ {
				if time.Now().After(deadline) || i > 10000 {
					t.Fatalf("status error still %q after 15s, want one naming %s as unavailable", last, url)
				}
				if last != statusStarting {
					t.Fatalf("status error %q says neither %q nor why %s is unavailable", last, statusStarting, url)
				}
				time.Sleep(50 * time.Millisecond)
				last = readStatusError(t, statusURL)
			}
			t.Logf("status error after %v: %s", time.Since(started).Round(time.Millisecond), last)
		})
	}
}

// readStatusError reads the status endpoint at url, which must answer
// within a second with 503 and a JSON object holding only a non-empty
// "error", and returns that error.
func readStatusError(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	start := time.Now()
	res, err := client.Get(url)
	if err != nil {
		t.Fatalf("status read (answer within 1s): %v", err)
	}
	defer res.Body.Close()
	var body struct {
		Error string `json:"error"`
	}
	dec := json.NewDecoder(res.Body)
	dec.DisallowUnknownFields()
	err = dec.Decode(&body)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("status answered in %v, want within 1s", took)
	}
	if res.StatusCode != http.StatusServiceUnavailable || err != nil || body.Error == "" {
		t.Fatalf("status without a node: HTTP %d, body %+v (decode: %v); want 503 and {\"error\": why}", res.StatusCode, body, err)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("status error Content-Type %q, want application/json", ct)
	}
	return body.Error
}

// silentServer returns the NATS URL of a TCP server that accepts
// connections and never answers (no INFO), so a client's connection
// attempt hangs until its timeout, and the function that stops it and
// closes its connections.
func silentServer(t *testing.T) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	stop := func() {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	}
	return "nats://" + ln.Addr().String(), stop
}
