package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/coord/registry"
	"github.com/concordrpc/concord/coord/txlog"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/msg/msgstatus"
	"github.com/concordrpc/concord/rpc"
)

// runCLI runs the concord command with args and returns what it printed.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(t.Context(), args, &out, io.Discard); err != nil {
		t.Fatalf("concord %s: %v", strings.Join(args, " "), err)
	}
	return out.String()
}

// TestStatusSectionsAgainstApp runs a greeter App, holds a lock with
// `concord lock hold`, trips the Shout limit and opens the breaker of a
// stopped instance, then prints each section of `concord status` as a
// table and as JSON (only that section's), the whole status, and a
// bounded -watch; `concord lock release` frees the lock.
func TestStatusSectionsAgainstApp(t *testing.T) {
	dataDir := t.TempDir()
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"), concord.WithDataDir(dataDir),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0),
		concord.WithClientOptions(rpc.WithProbation(time.Nanosecond), rpc.WithBalancing(rpc.BalanceRoundRobin)))
	greeterv1concord.RegisterGreeterService(app, greeter.Service{})
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
	addr, err := app.Server().Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	adminAddr, err := app.AdminAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node, err := app.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rpcURL, admin := "http://"+addr.String(), "http://"+adminAddr.String()
	creds := filepath.Join(dataDir, concord.AdminCredentialsFile)

	// A lock held through the CLI.
	out := runCLI(t, "lock", "hold", "demo", "-for", "30s", "-addr", admin, "-creds", creds)
	if !strings.HasPrefix(out, "demo held by operator admin via ") || !strings.Contains(out, ", token ") || !strings.Contains(out, "for 30s") {
		t.Fatalf("lock hold printed %q", out)
	}
	// The Shout limit (3 a second), tripped.
	shout := greeterv1concord.NewGreeterServiceClient(rpc.NewConn(rpcURL))
	refused := 0
	for range 6 {
		if _, err := shout.Shout(ctx, &greeterv1.ShoutRequest{Name: "x"}); connect.CodeOf(err) == connect.CodeResourceExhausted {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("no Shout refused")
	}
	// A stopped instance, still registered, whose breaker opens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	_ = ln.Close()
	reg, err := registry.Register(ctx, node, registry.Registration{Service: greeterv1concord.GreeterServiceDiscoveryName, ID: "stopped-1", BaseURL: dead, Ready: true},
		registry.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	policy := greeterv1concord.GreeterServicePolicy()
	m := policy.Method(greeterv1connect.GreeterServiceGreetProcedure)
	m.Retry = nil
	m.CircuitBreaker = &rpc.BreakerPolicy{FailureRatio: 0.5, MinRequests: 3, Window: 10 * time.Second, OpenFor: time.Minute, HalfOpenProbes: 1}
	greet := greeterv1connect.NewGreeterServiceClient(app.Client(policy))
	for i := 0; ; i++ {
		if i == 200 {
			t.Fatal("the stopped instance's breaker did not open in 200 calls")
		}
		_, _ = greet.Greet(ctx, &greeterv1.GreetRequest{Name: "x"})
		var bs []rpc.BreakerStatus
		if err := json.Unmarshal([]byte(runCLI(t, "status", "breakers", "-json", "-addr", admin)), &bs); err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(bs, func(b rpc.BreakerStatus) bool { return b.Instance == "stopped-1" && b.State == "open" }) {
			break
		}
	}

	// Each section as a table.
	for _, tc := range []struct {
		section string
		want    []string
	}{
		{"locks", []string{"LOCK", "demo", "operator admin via", "EXPIRES IN", "WAITING", "ELECTION", "concord-tcc-recovery"}},
		{"limits", []string{"LIMIT", "/greeter.v1.GreeterService/Shout", "token_bucket", "local", "3/1s"}},
		{"breakers", []string{"UPSTREAM", "stopped-1", dead, "open", rpcURL, "closed"}},
		{"transactions", []string{"no transactions in flight, stuck or recently finished"}},
		{"messages", nil},
		{"services", []string{"SERVICE", greeterv1concord.GreeterServiceDiscoveryName, "stopped-1"}},
		{"nodes", []string{"mode:", "BUCKET", "KV_concord_locks"}},
	} {
		out := runCLI(t, "status", tc.section, "-addr", admin)
		for _, want := range tc.want {
			if !strings.Contains(out, want) {
				t.Errorf("status %s lacks %q:\n%s", tc.section, want, out)
			}
		}
		for _, other := range []string{"LOCK", "LIMIT", "UPSTREAM", "BUCKET", "SERVICE"} {
			if !slices.Contains(tc.want, other) && strings.Contains(out, other) {
				t.Errorf("status %s prints another section (%s):\n%s", tc.section, other, out)
			}
		}
	}
	// Each section as JSON: only that section.
	var locks lock.Status
	strictJSON(t, runCLI(t, "status", "locks", "-json", "-addr", admin), &locks)
	if len(locks.Held) != 1 || locks.Held[0].Name != "demo" || locks.Held[0].Token == 0 || locks.Unknown != "" {
		t.Errorf("locks JSON %+v", locks)
	}
	var limits []rpc.LimitStatus
	strictJSON(t, runCLI(t, "status", "limits", "-json", "-addr", admin), &limits)
	if len(limits) != 1 || limits[0].Refused != uint64(refused) || limits[0].Admitted != uint64(6-refused) || limits[0].Saturation <= 0 {
		t.Errorf("limits JSON %+v, %d refused", limits, refused)
	}
	var breakers []rpc.BreakerStatus
	strictJSON(t, runCLI(t, "status", "breakers", "-json", "-addr", admin), &breakers)
	if len(breakers) != 2 {
		t.Errorf("breakers JSON %+v", breakers)
	}
	var txs txlog.Status
	strictJSON(t, runCLI(t, "status", "transactions", "-json", "-addr", admin), &txs)
	var msgs msgstatus.Status
	strictJSON(t, runCLI(t, "status", "messages", "-json", "-addr", admin), &msgs)
	if msgs.ConsumersUnknown != "" {
		t.Errorf("messages JSON %+v", msgs)
	}
	var services struct {
		Services []registry.ServiceStatus `json:"services"`
	}
	strictJSON(t, runCLI(t, "status", "services", "-json", "-addr", admin), &services)
	if len(services.Services) != 1 || len(services.Services[0].Instances) != 2 {
		t.Errorf("services JSON %+v", services)
	}
	// The whole status, as a table and as JSON.
	all := runCLI(t, "status", "-addr", admin)
	for _, want := range []string{"BUCKET", "SERVICE", "LOCK", "LIMIT", "UPSTREAM"} {
		if !strings.Contains(all, want) {
			t.Errorf("status lacks the %s table:\n%s", want, all)
		}
	}
	st := concord.Status{Status: &registry.Status{Status: &coord.Status{}}}
	strictJSON(t, runCLI(t, "status", "-json", "-addr", admin), &st)
	if st.Locks == nil || len(st.Limits) != 1 || len(st.Breakers) != 2 {
		t.Errorf("status JSON: locks %+v, limits %+v, breakers %+v", st.Locks, st.Limits, st.Breakers)
	}

	// -watch: -count reads, each frame a redraw; or until the context ends.
	out = runCLI(t, "status", "locks", "-watch", "-interval", "100ms", "-count", "3", "-addr", admin)
	if n := strings.Count(out, "\x1b[H\x1b[2J"); n != 3 || strings.Count(out, "demo") != 3 {
		t.Errorf("-watch -count 3 drew %d frames:\n%q", n, out)
	}
	out = runCLI(t, "status", "limits", "-json", "-watch", "-interval", "100ms", "-count", "2", "-addr", admin)
	dec := json.NewDecoder(strings.NewReader(out))
	for i := range 2 {
		var l []rpc.LimitStatus
		if err := dec.Decode(&l); err != nil || len(l) != 1 {
			t.Fatalf("-json -watch document %d: %v %+v\n%s", i, err, l, out)
		}
	}
	wctx, wcancel := context.WithTimeout(t.Context(), 350*time.Millisecond)
	defer wcancel()
	var wout bytes.Buffer
	start := time.Now()
	if err := run(wctx, []string{"status", "-watch", "-interval", "100ms", "-addr", admin}, &wout, io.Discard); err != nil {
		t.Fatalf("-watch until the context ends: %v", err)
	}
	if n := strings.Count(wout.String(), "\x1b[H\x1b[2J"); n < 1 || time.Since(start) > 15*time.Second {
		t.Errorf("-watch until the context ends drew %d frames in %v", n, time.Since(start))
	}

	// Release through the CLI.
	if out := runCLI(t, "lock", "release", "demo", "-addr", admin, "-creds", creds); out != "demo released\n" {
		t.Errorf("lock release printed %q", out)
	}
	if out := runCLI(t, "status", "locks", "-addr", admin); !strings.Contains(out, "no locks held") {
		t.Errorf("status locks after release:\n%s", out)
	}
	if _, err := app.Mutex("demo").TryLock(ctx); err != nil {
		t.Errorf("TryLock after release: %v", err)
	}
}

// strictJSON decodes out into v, refusing fields v does not have.
func strictJSON(t *testing.T, out string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%v in:\n%s", err, out)
	}
}

// TestStatusSectionsOfNode: a node's status has no limits or breakers
// (they are an app's), which its sections say; a bad section or lock name
// is a usage error.
func TestStatusSectionsOfNode(t *testing.T) {
	n := nodetest.Open(t, coord.WithName("solo"))
	res := registry.NewResolver(n, registry.ResolverLogger(slog.New(slog.DiscardHandler)))
	defer res.Close()
	srv := httptest.NewServer(registry.StatusHandler(n, res))
	defer srv.Close()
	if out := runCLI(t, "status", "limits", "-addr", srv.URL); !strings.Contains(out, "limits: not reported by this endpoint") {
		t.Errorf("node limits: %q", out)
	}
	if out := runCLI(t, "status", "breakers", "-json", "-addr", srv.URL); out != "null\n" {
		t.Errorf("node breakers JSON: %q", out)
	}
	if out := runCLI(t, "status", "locks", "-addr", srv.URL); !strings.Contains(out, "no locks held") {
		t.Errorf("node locks: %q", out)
	}
	for _, args := range [][]string{
		{"status", "bogus", "-addr", srv.URL},
		{"status", "locks", "limits", "-addr", srv.URL},
		{"status", "-watch", "-interval", "1ms", "-addr", srv.URL},
		{"lock", "hold", "a b"},
		{"lock", "hold", "demo", "-for", "1h"},
		{"lock", "grab", "demo"},
	} {
		var usage usageError
		if err := run(t.Context(), args, io.Discard, io.Discard); !errors.As(err, &usage) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}
