package concord_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/console"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/registry"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/internal/admincreds"
	"github.com/concordrpc/concord/internal/syncbuf"
)

// chromiumEnv names the Chromium binary TestConsoleInChromium drives;
// .ci/run sets it after .ci/chromium.sh installed Debian's chromium.
const chromiumEnv = "CONCORD_TEST_CHROMIUM"

// screenshotEnv, when set, is where TestConsoleInChromium also writes its
// full-page screenshot of the console (docs/console.png is one).
const screenshotEnv = "CONCORD_CONSOLE_SCREENSHOT"

// testClient bounds each request of the console tests.
var testClient = &http.Client{Timeout: 10 * time.Second}

// TestAppConsole: the admin listener serves the console beside the status
// and names its URL in the "admin listening" log line; WithoutConsole
// leaves it off.
func TestAppConsole(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []concord.Option
		want int
	}{
		{"default", nil, http.StatusOK},
		{"without", []concord.Option{concord.WithoutConsole()}, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncbuf.Buffer{}
			app := concord.New(append([]concord.Option{concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"),
				concord.WithDataDir(t.TempDir()), concord.WithLogger(slog.New(slog.NewTextHandler(logs, nil))), concord.WithDrainDelay(0)}, tc.opts...)...)
			greeterv1concord.RegisterGreeterService(app, greeter.Service{})
			_, stop := startApp(t, app)
			defer func() { _ = stop() }()
			admin, err := app.AdminAddr(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			res, err := testClient.Get("http://" + admin.String() + "/console/")
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tc.want {
				t.Fatalf("GET /console/: HTTP %d, want %d", res.StatusCode, tc.want)
			}
			line := ""
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "concord: admin listening") {
					line = l
				}
			}
			wantAttr := "console=http://" + admin.String() + "/console/"
			if got := strings.Contains(line, wantAttr); got != (tc.want == http.StatusOK) {
				t.Fatalf("admin log line %q: has %s = %v", line, wantAttr, got)
			}
		})
	}
}

// consoleStatus is what TestConsoleInChromium reads from the status JSON
// to know what the page must show. Locks, limits and breakers are parts a
// node may not report (they came later than the rest); present records
// which top-level fields the answer has.
type consoleStatus struct {
	Node     string                   `json:"node"`
	Services []registry.ServiceStatus `json:"services"`
	Locks    *struct {
		Held []struct {
			Name   string `json:"name"`
			Holder string `json:"holder"`
			Token  uint64 `json:"token"`
		} `json:"held"`
	} `json:"locks"`
	Limits []struct {
		Procedure string `json:"procedure"`
		Refused   uint64 `json:"refused"`
	} `json:"limits"`
	present map[string]bool
}

// readConsoleStatus reads the status at url; an answer other than 200 is
// an error.
func readConsoleStatus(url string) (*consoleStatus, error) {
	res, err := testClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d: %s", url, res.StatusCode, b)
	}
	var st consoleStatus
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("status: %v: %s", err, b)
	}
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, err
	}
	st.present = map[string]bool{}
	for k, v := range fields {
		st.present[k] = string(v) != "null"
	}
	return &st, nil
}

// TestConsoleInChromium drives the console in headless Chromium against a
// greeter App holding a lock (App.Mutex) whose Shout limit refused calls:
// the page shows the node, the greeter service and its instance and, when
// the status JSON reports them, the lock with its fencing token and the
// Shout limit's refusals ("not reported" otherwise). At 375px no element
// sticks out of the viewport except inside a scrolling box. When the
// status route answers 503 with {"error": ...}, as it does while
// coordination is down, a banner shows the reason and the last good data
// stays, greyed, until a read succeeds again. The page must throw no
// exception and break no Content-Security-Policy rule. Screenshots are
// test artifacts (go test -artifacts keeps them); with
// CONCORD_CONSOLE_SCREENSHOT=path, the full-page one is also written there.
//
// It skips unless CONCORD_TEST_CHROMIUM names a Chromium binary, and fails
// when it does and Chromium cannot start.
func TestConsoleInChromium(t *testing.T) {
	chromium := os.Getenv(chromiumEnv)
	if chromium == "" {
		t.Skip(chromiumEnv + " is not set: set it to a Chromium binary (bash .ci/chromium.sh installs /usr/bin/chromium) to drive the console in a headless browser")
	}
	dataDir := t.TempDir()
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"),
		concord.WithDataDir(dataDir), concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0),
		concord.WithCoordOptions(coord.WithName("greeter-1")))
	greeterv1concord.RegisterGreeterService(app, greeter.Service{})
	rpcURL, _ := startApp(t, app)
	actx, acancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer acancel()
	admin, err := app.AdminAddr(actx)
	if err != nil {
		t.Fatal(err)
	}
	adminURL := "http://" + admin.String()

	// The greeter's instance registered and ready.
	for deadline := time.Now().Add(15 * time.Second); ; {
		st, err := readConsoleStatus(adminURL + concord.StatusPath)
		if err == nil && len(st.Services) == 1 && len(st.Services[0].Instances) == 1 && st.Services[0].Instances[0].Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the greeter is not registered and ready within 15s: %+v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A lock held through the admin route, as `concord lock hold demo`
	// takes it, and a Shout limit that refused calls.
	token := holdLockAsOperator(t, adminURL, filepath.Join(dataDir, concord.AdminCredentialsFile), "demo")
	refused := 0
	for range 10 {
		res, err := testClient.Post(rpcURL+"/greeter.v1.GreeterService/Shout", "application/json", strings.NewReader(`{"name":"Ada"}`))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("10 Shout calls in a row: none refused, want the rate limit (3 a second) to refuse some")
	}
	st, err := readConsoleStatus(adminURL + concord.StatusPath)
	if err != nil {
		t.Fatal(err)
	}
	svc, inst := st.Services[0], st.Services[0].Instances[0]

	b := newBrowser(t, chromium)

	t.Run("desktop", func(t *testing.T) {
		tab := b.tab(t)
		tab.navigate(t, adminURL+"/console/")
		tab.waitFor(t, "the status to render", `document.getElementById("services-table") !== null`)
		if got := tab.text(t, "#node-name"); got != st.Node || got != "greeter-1" {
			t.Errorf("node name %q, want %q", got, st.Node)
		}
		if got := tab.text(t, "#fact-leader"); got != st.Node {
			t.Errorf("meta leader %q, want %q", got, st.Node)
		}
		if row := tab.row(t, "peers-table", st.Node); len(row) != 4 || !strings.HasPrefix(row[1], "meta leader, leads ") || row[2] != "current" {
			t.Errorf("peers table row %q, want %s as the current meta leader leading the streams", row, st.Node)
		}
		row := tab.row(t, "services-table", svc.Name)
		if want := []string{svc.Name, inst.ID, "ready", inst.BaseURL}; len(row) < 4 || !slices.Equal(row[:4], want) {
			t.Errorf("services table row %q, want it to start with %q", row, want)
		}
		for _, want := range []string{"KV_concord_locks", "CONCORD_TXLOG"} {
			if row := tab.row(t, "buckets-table", want); row == nil {
				t.Errorf("buckets table has no row %s", want)
			}
		}
		var held bool
		for _, l := range st.Locks.Held {
			held = held || l.Name == "demo" && l.Token == token && strings.HasPrefix(l.Holder, "operator admin via ")
		}
		if !held {
			t.Errorf("status JSON lists no lock demo held by the operator with token %d: %+v", token, st.Locks)
		}
		if row := tab.row(t, "locks-held", "demo"); len(row) != 5 || !strings.HasPrefix(row[1], "operator admin via ") ||
			row[2] != groupDigits(token) || row[3] == "" || row[4] != "0" {
			t.Errorf("locks table row %q, want demo held by the operator with token %s, a time left and nobody waiting", row, groupDigits(token))
		}
		var reported uint64
		for _, l := range st.Limits {
			if l.Procedure == "/greeter.v1.GreeterService/Shout" {
				reported = l.Refused
			}
		}
		if reported != uint64(refused) {
			t.Errorf("status JSON reports %d refusals for Shout, want the %d the calls saw: %+v", reported, refused, st.Limits)
		}
		row = tab.row(t, "limits-table", "/greeter.v1.GreeterService/Shout")
		if n, err := strconv.ParseUint(strings.ReplaceAll(cell(row, 6), ",", ""), 10, 64); err != nil || n != uint64(refused) {
			t.Errorf("limits table row %q, want Shout with its %d refusals", row, refused)
		}
		if !st.present["breakers"] {
			tab.contains(t, "#breakers-body", "not reported")
		}
		tab.contains(t, "#transactions-body", "In flight")
		tab.contains(t, "#messages-body", "Dead letters")
		if tab.visible(t, "#banner") {
			t.Errorf("banner shown while the status answers: %q", tab.text(t, "#banner"))
		}
		png := tab.screenshot(t, "console.png")
		if path := os.Getenv(screenshotEnv); path != "" {
			if err := os.WriteFile(path, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot written to %s (%s)", path, screenshotEnv)
		}
	})

	t.Run("narrow", func(t *testing.T) {
		tab := b.tab(t)
		tab.do(t, chromedp.EmulateViewport(375, 812))
		tab.navigate(t, adminURL+"/console/")
		tab.waitFor(t, "the status to render", `document.getElementById("services-table") !== null`)
		out := tab.eval(t, overflowJS)
		var res struct {
			Width, ScrollWidth int
			Out                []string
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if res.Width != 375 || res.ScrollWidth > res.Width || len(res.Out) > 0 {
			t.Errorf("at 375px: viewport %d, page %d wide; sticking out: %q", res.Width, res.ScrollWidth, res.Out)
		}
		tab.screenshot(t, "console-375.png")
	})

	t.Run("coordination down", func(t *testing.T) {
		// The console and a status route that answers as the App's does,
		// or as it does while coordination is down.
		const reason = "concord: coordination not available: nats: no servers available for connection"
		var down atomic.Bool
		mux := http.NewServeMux()
		mux.Handle("GET "+console.Path, console.Handler())
		mux.HandleFunc("GET "+console.DefaultStatusPath, func(w http.ResponseWriter, r *http.Request) {
			if down.Load() {
				coord.WriteStatusError(w, errors.New(reason))
				return
			}
			res, err := testClient.Get(adminURL + concord.StatusPath)
			if err != nil {
				coord.WriteStatusError(w, err)
				return
			}
			defer res.Body.Close()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(res.StatusCode)
			_, _ = io.Copy(w, res.Body)
		})
		srv := httptest.NewServer(mux)
		defer srv.Close()

		tab := b.tab(t)
		tab.navigate(t, srv.URL+"/console/")
		tab.waitFor(t, "the status to render", `document.getElementById("services-table") !== null`)
		down.Store(true)
		tab.waitFor(t, "the banner", `!document.getElementById("banner").hidden`)
		if got := tab.text(t, "#banner-reason"); !strings.Contains(got, reason) {
			t.Errorf("banner reason %q, want it to contain %q", got, reason)
		}
		tab.contains(t, "#banner", "Coordination status unavailable")
		tab.contains(t, "#banner", "last good data")
		if !tab.bool(t, `document.body.classList.contains("stale")`) {
			t.Error("the last good data is not marked stale")
		}
		if got := tab.text(t, "#node-name"); got != st.Node {
			t.Errorf("node name %q while down, want the last good %q", got, st.Node)
		}
		if row := tab.row(t, "services-table", svc.Name); row == nil {
			t.Error("the last good services are gone while down")
		}
		tab.screenshot(t, "console-down.png")
		// Back up: the next read (after a backoff of 4s) clears the banner.
		down.Store(false)
		tab.waitFor(t, "the banner to go", `document.getElementById("banner").hidden && !document.body.classList.contains("stale")`)
	})

	t.Run("every part", func(t *testing.T) {
		// A status with every part the page renders, in the shapes the
		// status types write them (and the shapes of the parts that come
		// with locks, limits and breakers), with markup in the strings.
		mux := http.NewServeMux()
		mux.Handle("GET "+console.Path, console.Handler())
		mux.HandleFunc("GET "+console.DefaultStatusPath, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, everyPart)
		})
		srv := httptest.NewServer(mux)
		defer srv.Close()
		tab := b.tab(t)
		tab.navigate(t, srv.URL+"/console/")
		tab.waitFor(t, "the status to render", `document.getElementById("services-table") !== null`)
		for _, tc := range []struct {
			table, first string
			want         []string
		}{
			{"peers-table", "n1", []string{"n1", "leads 1 stream", "current", ""}},
			{"peers-table", "n2", []string{"n2", "—", "offline", "n1 last heard from it 7s ago"}},
			{"buckets-table", "CONCORD_TXLOG", []string{"CONCORD_TXLOG", "stream", "?", "none", "?", "?", "no answer within 1s"}},
			{"services-table", hostile, []string{hostile, "i-1", "not ready", "http://127.0.0.1:8081", "eu-1", "v2"}},
			{"locks-held", "demo", []string{"demo", "greeter-1/7f3a", "42", "8.1 s", "2"}},
			{"locks-elections", "concord-tcc-recovery", []string{"concord-tcc-recovery", "greeter-2/19bc", "7", "9 s", "1"}},
			{"limits-table", "/greeter.v1.GreeterService/Shout", []string{"/greeter.v1.GreeterService/Shout", "token bucket", "local", "5 / 1 s", "5", "12", "3", "60%"}},
			{"breakers-table", "greeter.v1.GreeterService", []string{"greeter.v1.GreeterService", "i-2", "http://127.0.0.1:8082", "open", "5"}},
			{"consumers-table", "audit", []string{"audit", "orders", "17", "4", "2", "1"}},
			{"outboxes-table", "greeter-1", []string{"greeter-1", "badger", "3", "1 min 05 s", ""}},
		} {
			if got := tab.row(t, tc.table, tc.first); !slices.Equal(got, tc.want) {
				t.Errorf("%s: row %q, want %q", tc.table, got, tc.want)
			}
		}
		for _, tc := range []struct{ sel, want string }{
			{"#node-name", hostile},
			{"#fact-leader", "unknown no meta leader is elected"},
			{"#locks-body", "The list is cut short"},
			{"#tx-stuck", "tx-9"},
			{"#tx-stuck", "Confirm failed: bank unavailable"},
			{"#tx-inflight", "tx-8"},
			{"#tx-finished", "tx-1"},
			{"#dead-letters-count", "3"},
			{"#messages-body", "concord dead-letters replay"},
		} {
			tab.contains(t, tc.sel, tc.want)
		}
		// The markup in the strings is text: no element came of it, and
		// nothing ran.
		if tab.bool(t, `document.querySelectorAll("img, b").length > 0 || window.pwned !== undefined`) {
			t.Error("markup from the status became elements")
		}
		tab.screenshot(t, "console-every-part.png")
	})

	t.Run("dead letters", func(t *testing.T) {
		// A dead letter of the App: the page counts it and asks for the
		// admin token; a wrong one is refused with a clear message; with
		// the App's token it lists it, and Replay sends it back to its
		// consumer (which now handles it) and it leaves the page.
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		p, dls := appDeadLetters(ctx, t, app, "billing", "orders.placed", "order-1")
		seq := strconv.FormatUint(dls[0].Seq, 10)
		tab := b.tab(t)
		tab.navigate(t, adminURL+"/console/")
		tab.waitFor(t, "the dead letter to be counted", `(document.getElementById("dead-letters-count") || {}).textContent === "1"`)
		if !tab.visible(t, "#dead-letters-panel") || !tab.visible(t, "#dl-token") {
			t.Fatal("no token field for the dead letters")
		}
		tab.contains(t, "#dl-note", "Paste an admin token")
		if tab.bool(t, `document.getElementById("dead-letters-table") !== null`) {
			t.Error("dead letters listed without a token")
		}
		if got := tab.eval(t, `document.getElementById("dl-token").type`); got != "password" {
			t.Errorf("token field of type %q, want password", got)
		}

		tab.do(t, chromedp.SendKeys("#dl-token", "not-the-admin-token-0123456789abcdef"), chromedp.Click("#dl-token-use"))
		tab.waitFor(t, "the refusal", `!document.getElementById("dl-error").hidden`)
		tab.contains(t, "#dl-error", "The admin token was refused (HTTP 401)")
		if tab.bool(t, `document.getElementById("dead-letters-table") !== null`) {
			t.Error("dead letters listed with a wrong token")
		}

		token := adminToken(t, dataDir)
		tab.do(t, chromedp.SendKeys("#dl-token", token), chromedp.Click("#dl-token-use"))
		tab.waitFor(t, "the dead letter to be listed", `document.getElementById("dl-replay-`+seq+`") !== null`)
		row := tab.row(t, "dead-letters-table", seq)
		if len(row) != 9 || row[1] != "billing" || row[2] != "orders.placed" || row[3] != "order-1" || row[4] != "1" ||
			!strings.Contains(row[5], "cannot handle order-1") || row[7] != "7 B" || row[8] != "ReplayDiscard" {
			t.Errorf("dead letters row %q", row)
		}
		if tab.visible(t, "#dl-error") {
			t.Errorf("error shown with the right token: %q", tab.text(t, "#dl-error"))
		}
		// The token is in this tab's sessionStorage only: not in the
		// field, the URL or localStorage.
		if got := tab.eval(t, `[document.getElementById("dl-token").value, location.href, JSON.stringify(localStorage),
			String(Object.values(sessionStorage).includes(`+strconv.Quote(token)+`))].join(" ")`); strings.Contains(got, token) || !strings.HasSuffix(got, " {} true") {
			t.Errorf("token kept as %q, want only in sessionStorage", got)
		}
		tab.screenshot(t, "console-dead-letters.png")
		// At a narrow width the list scrolls in its box and the form wraps.
		tab.do(t, chromedp.EmulateViewport(375, 812))
		var res struct {
			Width, ScrollWidth int
			Out                []string
		}
		if out := tab.eval(t, overflowJS); json.Unmarshal([]byte(out), &res) != nil || res.ScrollWidth > res.Width || len(res.Out) > 0 {
			t.Errorf("at 375px with dead letters: %s", out)
		}
		tab.screenshot(t, "console-dead-letters-375.png")

		p.Heal()
		tab.do(t, chromedp.Click("#dl-replay-"+seq))
		tab.waitFor(t, "the replay", `document.getElementById("dl-note").textContent.indexOf("Replayed dead letter `+seq+`.") === 0`)
		tab.waitFor(t, "the dead letter to leave the page", `document.getElementById("dead-letters-count").textContent === "0" &&
			document.getElementById("dl-replay-`+seq+`") === null && document.getElementById("dead-letters-table") === null`)
		tab.contains(t, "#dl-note", "No dead letter is left.")
		p.WaitHandled(t, "order-1")
	})

	if msgs := b.problems(); len(msgs) > 0 {
		t.Errorf("the page reported:\n%s", strings.Join(msgs, "\n"))
	}
}

// hostile is a string with markup that the page must show as text.
const hostile = `<img src=x onerror="window.pwned=1"><b>greeter</b>`

// everyPart is a status with every part the console renders, and markup
// in the names.
var everyPart = strings.ReplaceAll(`{
  "mode": "cluster", "node": "HOSTILE",
  "meta_leader_unknown": "no meta leader is elected",
  "peers": [{"name": "n1", "state": "current"}, {"name": "n2", "state": "offline", "reason": "n1 last heard from it 7s ago"}],
  "buckets": [
    {"name": "KV_concord_locks", "kind": "kv", "replicas": 3, "leader": "n1", "messages": 2},
    {"name": "CONCORD_TXLOG", "kind": "stream", "replicas": 0, "messages": 0, "unknown": "no answer within 1s"}
  ],
  "services": [{"name": "HOSTILE", "instances": [
    {"service": "HOSTILE", "id": "i-1", "version": "v2", "base_url": "http://127.0.0.1:8081", "zone": "eu-1", "ready": false}
  ]}],
  "transactions": {
    "in_flight": [{"id": "tx-8", "state": "trying", "branches": [{"service": "bank", "id": "b1", "try": "TryDebit", "confirm": "ConfirmDebit", "cancel": "CancelDebit"}],
      "created": "2026-01-01T10:00:00Z", "deadline": "2026-01-01T10:00:30Z", "updated": "2026-01-01T10:00:01Z"}],
    "stuck": [{"id": "tx-9", "state": "confirming", "coordinator": "n1", "attempts": 4,
      "branches": [{"service": "bank", "id": "b1", "try": "TryDebit", "confirm": "ConfirmDebit", "cancel": "CancelDebit", "error": "Confirm failed: bank unavailable"}],
      "created": "2026-01-01T10:00:00Z", "deadline": "2026-01-01T10:00:30Z", "updated": "2026-01-01T10:05:00Z"}],
    "finished": [{"id": "tx-1", "state": "confirmed", "branches": [{"service": "bank", "id": "b1", "try": "TryDebit", "confirm": "ConfirmDebit", "cancel": "CancelDebit", "done": true}],
      "created": "2026-01-01T09:00:00Z", "deadline": "2026-01-01T09:00:30Z", "updated": "2026-01-01T09:00:01Z"}]
  },
  "messages": {
    "consumers": [{"name": "audit", "topic": "orders", "partitions": 17, "pending": 4, "in_flight": 2, "redelivered": 1}],
    "dead_letters": 3,
    "outboxes": [{"instance": "greeter-1", "store": "badger", "rows": 3, "oldest": "2026-01-01T10:00:00Z", "oldest_age_ms": 65000}]
  },
  "locks": {"held": [{"name": "demo", "holder": "greeter-1/7f3a", "token": 42, "expires_in_ms": 8123, "waiting": 2}],
    "elections": [{"name": "concord-tcc-recovery", "leader": "greeter-2/19bc", "token": 7, "expires_in_ms": 9000, "waiting": 1}],
    "truncated": true, "unknown": ""},
  "limits": [{"procedure": "/greeter.v1.GreeterService/Shout", "algorithm": "token_bucket", "scope": "local", "rate": 5, "per_ms": 1000, "burst": 5,
    "admitted": 12, "refused": 3, "saturation": 0.6}],
  "breakers": [{"service": "greeter.v1.GreeterService", "instance": "i-2", "address": "http://127.0.0.1:8082", "state": "open", "failures": 5}]
}`, `"HOSTILE"`, func() string { b, _ := json.Marshal(hostile); return string(b) }())

// overflowJS lists the visible elements that stick out of the viewport
// sideways, leaving out those inside a box that scrolls sideways (the box
// itself must fit).
const overflowJS = `(() => {
  const width = document.documentElement.clientWidth;
  const scrolls = (e) => {
    for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === "auto" || o === "scroll" || o === "hidden") return true;
    }
    return false;
  };
  const out = [];
  for (const e of document.body.querySelectorAll("*")) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if ((r.left < -0.5 || r.right > width + 0.5) && !scrolls(e)) {
      out.push(e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className ? "." + e.className : "") + " " + Math.round(r.left) + ".." + Math.round(r.right));
    }
  }
  return JSON.stringify({width: width, scrollWidth: document.documentElement.scrollWidth, out: out.slice(0, 20)});
})()`

// browser is a headless Chromium for one test, with what its pages wrote
// to the console.
type browser struct {
	ctx  context.Context
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

// browserStart bounds Chromium's start, and browserStep each step.
const (
	browserStart = 60 * time.Second
	browserStep  = 30 * time.Second
)

// newBrowser starts Chromium at path, failing the test if it cannot; the
// browser stops at the test's end, before its profile directory goes.
func newBrowser(t *testing.T, path string) *browser {
	t.Helper()
	actx, acancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		// Chromium reaches for the network on its own (updates, sync,
		// QUIC probes); where the network is closed that stalls it.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		acancel() // waits for the process to exit
	})
	// The first Run starts the browser, which lives as long as ctx: it
	// cannot take a timeout of its own, so the wait for it is bounded here.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("%s=%s: Chromium did not start: %v", chromiumEnv, path, err)
		}
	case <-time.After(browserStart):
		cancel()
		acancel()
		<-started
		t.Fatalf("%s=%s: Chromium did not start within %v", chromiumEnv, path, browserStart)
	}
	return &browser{ctx: ctx}
}

// problems returns the uncaught exceptions and Content-Security-Policy
// violations the pages reported.
func (b *browser) problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.msgs {
		if m.IsException() || strings.Contains(m.Text, "Content Security Policy") || strings.Contains(m.Text, "Refused to") {
			out = append(out, m.String())
		}
	}
	return out
}

// tab is a browser tab.
type tab struct{ ctx context.Context }

// tab opens a tab whose console messages the browser collects.
func (b *browser) tab(t *testing.T) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("open a tab: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.msgs = append(b.msgs, m)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &tab{ctx: ctx}
}

func (tb *tab) do(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserStep)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func (tb *tab) navigate(t *testing.T, url string) {
	t.Helper()
	tb.do(t, chromedp.Navigate(url))
}

// eval evaluates a JavaScript expression whose value is a string.
func (tb *tab) eval(t *testing.T, expr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserStep)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

func (tb *tab) bool(t *testing.T, expr string) bool {
	t.Helper()
	return tb.eval(t, "String(Boolean("+expr+"))") == "true"
}

// waitFor waits, at most 20 seconds, until expr is true.
func (tb *tab) waitFor(t *testing.T, what, expr string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !tb.bool(t, expr); {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20s for %s (%s); the page says:\n%s", what, expr, tb.eval(t, "document.body.innerText"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// text returns the text of the element sel selects, "" when there is none.
func (tb *tab) text(t *testing.T, sel string) string {
	t.Helper()
	return tb.eval(t, fmt.Sprintf(`(document.querySelector(%q) || {textContent: ""}).textContent`, sel))
}

func (tb *tab) visible(t *testing.T, sel string) bool {
	t.Helper()
	return tb.bool(t, fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e && !e.hidden && e.getClientRects().length > 0; })()`, sel))
}

// contains fails the test unless the element sel selects contains want.
func (tb *tab) contains(t *testing.T, sel, want string) {
	t.Helper()
	if got := tb.text(t, sel); !strings.Contains(got, want) {
		t.Errorf("%s: %q, want it to contain %q", sel, got, want)
	}
}

// row returns the cells of the first body row of table id whose first
// cell is first, or nil.
func (tb *tab) row(t *testing.T, id, first string) []string {
	t.Helper()
	out := tb.eval(t, fmt.Sprintf(`(() => {
  const t = document.getElementById(%q);
  if (!t) return "null";
  for (const r of t.tBodies[0].rows) {
    if (r.cells[0].textContent === %q) return JSON.stringify(Array.from(r.cells, (c) => c.textContent));
  }
  return "null";
})()`, id, first))
	var cells []string
	if err := json.Unmarshal([]byte(out), &cells); err != nil {
		t.Fatalf("row: %v: %s", err, out)
	}
	return cells
}

// screenshot saves a full-page PNG as a test artifact and returns it.
func (tb *tab) screenshot(t *testing.T, name string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserStep)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot is not a PNG")
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	return png
}

func cell(row []string, i int) string {
	if i < len(row) {
		return row[i]
	}
	return ""
}

// groupDigits writes n as the page does (en-US digit grouping).
func groupDigits(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// holdLockAsOperator takes the lock name through the App's admin route
// for a minute, with the credential in credsFile, as `concord lock hold`
// does, and returns its fencing token.
func holdLockAsOperator(t *testing.T, adminURL, credsFile, name string) uint64 {
	t.Helper()
	cs, err := admincreds.Read(credsFile)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := admincreds.Pick(cs, "")
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, adminURL+concord.LocksPath+name+"/hold?for=60s", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cred.Token)
	res, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		Token uint64 `json:"token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != http.StatusOK || out.Token == 0 {
		t.Fatalf("hold %s through the admin route: %s, %+v, %v", name, res.Status, out, err)
	}
	return out.Token
}
