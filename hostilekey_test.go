package concord_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/rpc"
)

// TestHostileLimitKeys sends the values a hostile caller would put in the
// header a cluster-scoped limit is keyed by: 5,000 bytes (which, used raw
// in a NATS subject, made the server close the App's connection: issue
// 11), 64 KiB, 1 MiB (just within the HTTP server's header limit), and
// thousands of distinct ones. Coordination must stay
// connected, a lock held meanwhile must keep its lease, the heap must not
// keep the values, and each key must still get its own limit.
func TestHostileLimitKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("sends thousands of calls")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	policy := greeterv1concord.GreeterServicePolicy()
	policy.Method(greeterv1connect.GreeterServiceShoutProcedure).RateLimit = &rpc.RateLimitPolicy{
		Algorithm: rpc.TokenBucket, Rate: 2, Per: time.Minute, Burst: 2,
		Scope: rpc.ScopeCluster, Key: rpc.KeyHeader, Header: "X-Tenant",
	}
	// The App's warnings about the limiter store are kept: admission logs
	// one when the store fails and it falls back to counting per instance,
	// which would let this test pass without the cluster store.
	warnings := &warnLog{}
	app, url := serveLogged(ctx, t, policy, slog.New(warnings))
	node, err := app.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// writes counts the grants stored in the limits bucket: every 200
	// below was granted by the cluster store, one write (at least) each.
	writes := func() uint64 {
		t.Helper()
		s, err := node.JetStream().Stream(ctx, "KV_"+coord.BucketLimits)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().State.LastSeq
	}
	start := writes()
	held := app.Mutex("held")
	if _, err := held.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = held.Unlock(context.Background()) }()

	client := &http.Client{}
	shout := func(tenant string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/greeter.v1.GreeterService/Shout", strings.NewReader(`{"name":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Tenant", tenant)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	// Each key gets its own limit, long or short: burst 2, then refused.
	for _, tenant := range []string{strings.Repeat("a", 5000), strings.Repeat("b", 64<<10), strings.Repeat("d", 1<<20), "c"} {
		got := []int{shout(tenant), shout(tenant), shout(tenant)}
		want := []int{http.StatusOK, http.StatusOK, http.StatusTooManyRequests}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("tenant of %d bytes: statuses %v, want %v", len(tenant), got, want)
		}
	}
	if !node.Conn().IsConnected() {
		t.Fatal("the App's coordination connection closed after long limit keys")
	}
	afterKeys := writes()
	if n := afterKeys - start; n < 8 {
		t.Fatalf("the limits bucket took %d writes for 8 admitted calls; want one per grant at least (the cluster store was not used)", n)
	}

	// Thousands of distinct 64 KiB keys: about 128 MiB sent; the heap keeps
	// a digest of each, not the value.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	prefix := strings.Repeat("z", 64<<10)
	for i := range 2000 {
		if got := shout(fmt.Sprintf("%s%d", prefix, i)); got != http.StatusOK {
			t.Fatalf("distinct tenant %d: status %d, want 200", i, got)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 16<<20 {
		t.Errorf("the heap grew by %d MiB after 2,000 distinct 64 KiB keys; want under 16 MiB", grew>>20)
	}
	if !node.Conn().IsConnected() {
		t.Fatal("the App's coordination connection closed under distinct keys")
	}
	select {
	case <-held.Done():
		t.Fatal("the lock held meanwhile lost its lease")
	default:
	}
	if time.Until(held.Deadline()) <= 0 {
		t.Fatal("the held lock's lease ran out")
	}
	if n := writes() - afterKeys; n < 2000 {
		t.Fatalf("the limits bucket took %d writes for 2,000 admitted calls of distinct keys; want one per grant at least (the cluster store was not used)", n)
	}
	if w := warnings.all(); len(w) != 0 {
		t.Fatalf("the App warned %q: admission counted per instance, not with the cluster store", w)
	}
}

// serveLogged is servePolicy with the App's logger (and no admin listener).
func serveLogged(ctx context.Context, t *testing.T, policy *rpc.ServicePolicy, logger *slog.Logger) (*concord.App, string) {
	t.Helper()
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr(""), concord.WithDataDir(t.TempDir()), concord.WithLogger(logger))
	app.RegisterService(policy, func(s *connect.Server) { greeterv1connect.RegisterGreeterServiceHandler(s, greeter.Service{}) })
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	if _, err := app.Node(ctx); err != nil {
		t.Fatal(err)
	}
	addr, err := app.Server().Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return app, "http://" + addr.String()
}

// warnLog is a slog.Handler that keeps the warnings about the limiter
// store (with their attributes) and drops every other record.
type warnLog struct {
	mu   sync.Mutex
	msgs []string
}

func (h *warnLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *warnLog) Handle(_ context.Context, r slog.Record) error {
	if !strings.Contains(r.Message, "limiter store") {
		return nil
	}
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, msg)
	return nil
}

func (h *warnLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *warnLog) WithGroup(string) slog.Handler      { return h }

func (h *warnLog) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.msgs)
}
