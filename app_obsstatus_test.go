package concord_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/coord/registry"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/rpc"
)

// deadURL returns the base URL of a loopback port that was listened on and
// closed: an instance that stopped.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	_ = ln.Close()
	return u
}

// getStatus reads an App's status endpoint and returns it decoded both as
// a concord.Status and as generic JSON (to check the field names).
func getStatus(t *testing.T, admin net.Addr) (*concord.Status, map[string]any) {
	t.Helper()
	res, err := http.Get("http://" + admin.String() + concord.StatusPath)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("status: %d %v: %s", res.StatusCode, err, body)
	}
	st := &concord.Status{}
	if err := json.Unmarshal(body, st); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	return st, raw
}

// keys returns the sorted keys of a JSON object.
func keys(t *testing.T, v any) []string {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%v is not a JSON object", v)
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestAppStatusLocksLimitsBreakers runs a greeter App, holds a lock through
// App.Mutex, trips the Shout limit with real calls, and calls the greeter
// through App.Client with a stopped instance registered beside the live
// one: the status JSON lists the lock (name, holder, token, time left),
// the limit (policy, admitted and refused counts, saturation) and both
// instances' breakers (the stopped one open), under the field names the
// console reads; /metrics shows the same (lock grants and waits, limit
// counts, breaker states, client calls) and passes promlint.
func TestAppStatusLocksLimitsBreakers(t *testing.T) {
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"), concord.WithDataDir(t.TempDir()),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0),
		concord.WithClientOptions(rpc.WithProbation(time.Nanosecond), rpc.WithBalancing(rpc.BalanceRoundRobin)))
	greeterv1concord.RegisterGreeterService(app, greeter.Service{})
	url, stop := startApp(t, app)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	admin := adminReady(ctx, t, app)

	// A lock held through the App.
	mu := app.Mutex("demo")
	token, err := mu.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Unlock(context.Background())

	// The Shout limit (3 per second): 8 calls at once, 3 to 4 admitted.
	shout := greeterv1connect.NewGreeterServiceClient(rpc.NewConn(url).Client(greeterv1concord.GreeterServicePolicy()))
	refused := 0
	for range 8 {
		if _, err := shout.Shout(ctx, &greeterv1.ShoutRequest{Name: "x"}); connect.CodeOf(err) == connect.CodeResourceExhausted {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}

	// A stopped instance of the greeter, still registered (as one that
	// crashed is until its registration expires), beside the App's own.
	node, err := app.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dead := deadURL(t)
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
	greets := 0
	for i := 0; ; i++ {
		if i == 200 {
			t.Fatal("the stopped instance's breaker did not open in 200 calls")
		}
		_, _ = greet.Greet(ctx, &greeterv1.GreetRequest{Name: "x"})
		greets++
		st, _ := getStatus(t, admin)
		if i := slices.IndexFunc(st.Breakers, func(b rpc.BreakerStatus) bool { return b.Instance == "stopped-1" }); i >= 0 && st.Breakers[i].State == "open" {
			break
		}
	}

	st, raw := getStatus(t, admin)
	// Names, as the console reads them.
	if got, want := keys(t, raw["locks"]), []string{"elections", "held", "truncated", "unknown"}; !slices.Equal(got, want) {
		t.Errorf("locks fields %v, want %v", got, want)
	}
	held := raw["locks"].(map[string]any)["held"].([]any)
	if len(held) == 0 {
		t.Fatal("no held lock in the status")
	}
	if got, want := keys(t, held[0]), []string{"expires_in_ms", "holder", "name", "token", "waiting"}; !slices.Equal(got, want) {
		t.Errorf("held lock fields %v, want %v", got, want)
	}
	limits := raw["limits"].([]any)
	if got, want := keys(t, limits[0]), []string{"admitted", "algorithm", "borrowed", "burst", "key", "per_ms", "procedure", "rate", "refused", "saturation", "scope"}; !slices.Equal(got, want) {
		t.Errorf("limit fields %v, want %v", got, want)
	}
	breakers := raw["breakers"].([]any)
	if got, want := keys(t, breakers[0]), []string{"address", "failures", "in_flight", "instance", "service", "state"}; !slices.Equal(got, want) {
		t.Errorf("breaker fields %v, want %v", got, want)
	}

	// Values.
	l := st.Locks
	host, _ := os.Hostname()
	if l == nil || l.Unknown != "" || l.Truncated || len(l.Held) != 1 {
		t.Fatalf("locks %+v", l)
	}
	if h := l.Held[0]; h.Name != "demo" || h.Token != token || h.Holder != fmt.Sprintf("%s/%d", host, os.Getpid()) || h.ExpiresInMillis <= 0 || h.ExpiresInMillis > lock.DefaultTTL.Milliseconds() {
		t.Errorf("held %+v, want demo with token %d held by this process", h, token)
	}
	if refused < 4 || refused > 5 {
		t.Errorf("%d of 8 Shouts refused, want 4 or 5", refused)
	}
	if len(st.Limits) != 1 {
		t.Fatalf("limits %+v", st.Limits)
	}
	want := rpc.LimitStatus{Procedure: greeterv1connect.GreeterServiceShoutProcedure, Algorithm: "token_bucket", Scope: "local", Key: "none",
		Rate: 3, PerMillis: 1000, Burst: 3, Admitted: uint64(8 - refused), Refused: uint64(refused), Saturation: float64(refused) / 8}
	if got := st.Limits[0]; got != want {
		t.Errorf("limit %+v, want %+v", got, want)
	}
	if len(st.Breakers) != 2 {
		t.Fatalf("breakers %+v, want the App and stopped-1", st.Breakers)
	}
	for _, b := range st.Breakers {
		if b.Service != greeterv1concord.GreeterServiceDiscoveryName {
			t.Errorf("breaker %+v: service", b)
		}
		switch {
		case b.Instance == "stopped-1":
			if b.State != "open" || b.Address != dead || b.Failures < 2 {
				t.Errorf("stopped instance %+v, want open with its failures", b)
			}
		case b.Address != url:
			t.Errorf("breaker %+v, want the App at %s", b, url)
		case b.State != "closed" || b.Failures != 0:
			t.Errorf("live instance %+v, want closed", b)
		}
	}

	// The same, as metrics: lock grants and waits, the limit's counts,
	// the breakers' states, the client's calls; all passing promlint.
	body := scrape(t, "http://"+admin.String()+concord.MetricsPath)
	families := parseMetrics(t, body)
	mutex := map[string]string{"kind": "mutex"}
	if got := value(families["concord_lock_grants_total"], mutex); got != 1 {
		t.Errorf("mutex grants %v, want 1", got)
	}
	if got := histogramCount(families["concord_lock_wait_duration_seconds"], mutex); got != 1 {
		t.Errorf("mutex wait observations %v, want 1", got)
	}
	shoutLabels := map[string]string{"procedure": greeterv1connect.GreeterServiceShoutProcedure}
	if got := value(families["concord_rpc_limit_refused_calls_total"], shoutLabels); got != float64(refused) {
		t.Errorf("refused calls %v, want %d", got, refused)
	}
	if got := value(families["concord_rpc_limit_admitted_calls_total"], shoutLabels); got != float64(8-refused) {
		t.Errorf("admitted calls %v, want %d", got, 8-refused)
	}
	if got := value(families["concord_rpc_client_breaker_state"], map[string]string{"instance": "stopped-1"}); got != 2 {
		t.Errorf("stopped instance's breaker state %v, want 2 (open)", got)
	}
	service := map[string]string{"service": greeterv1concord.GreeterServiceDiscoveryName}
	if got := value(families["concord_rpc_client_calls_total"], service); got != float64(greets) {
		t.Errorf("client calls %v, want %d", got, greets)
	}
	if got := histogramCount(families["concord_rpc_client_call_duration_seconds"], service); got != uint64(greets) {
		t.Errorf("client call durations %v, want %d", got, greets)
	}
	connectCalls := map[string]string{"service": greeterv1concord.GreeterServiceDiscoveryName, "protocol": "connect"}
	for _, name := range []string{"concord_rpc_client_request_message_bytes", "concord_rpc_client_response_message_bytes"} {
		if got := histogramCount(families[name], connectCalls); got != uint64(greets) {
			t.Errorf("%s observations over connect %v, want %d", name, got, greets)
		}
	}
	if f := families["concord_rpc_client_calls_in_flight"]; f == nil || value(f, service) != 0 {
		t.Errorf("client calls in flight after every call ended: %v, want a series at 0", f)
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
