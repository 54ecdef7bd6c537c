package concord_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/rpc"
)

// spanRecorder is a tracer provider whose spans an in-memory exporter
// keeps as each one ends.
type spanRecorder struct {
	tp  *sdktrace.TracerProvider
	exp *tracetest.InMemoryExporter
}

func newSpanRecorder(t *testing.T) *spanRecorder {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return &spanRecorder{tp: tp, exp: exp}
}

// span returns the one ended span named name of kind, waiting for it up
// to 10s (a server span ends after its handler returns, which can be
// after the caller has the answer).
func (r *spanRecorder) span(t *testing.T, name string, kind trace.SpanKind) tracetest.SpanStub {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var found []tracetest.SpanStub
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		found = found[:0]
		for _, s := range r.exp.GetSpans() {
			if s.Name == name && s.SpanKind == kind {
				found = append(found, s)
			}
		}
		if len(found) > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(found) != 1 {
		var all []string
		for _, s := range r.exp.GetSpans() {
			all = append(all, s.Name+"/"+s.SpanKind.String())
		}
		t.Fatalf("%d %s spans named %s, want 1; spans: %v", len(found), kind, name, all)
	}
	return found[0]
}

// tracedClientApp is an App in client mode against the NATS server at
// url, traced with tp.
func tracedClientApp(t *testing.T, url string, tp trace.TracerProvider, opts ...concord.Option) *concord.App {
	t.Helper()
	return concord.New(append([]concord.Option{
		concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr(""), concord.WithDataDir(t.TempDir()),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0), concord.WithoutMetrics(),
		concord.WithCoordOptions(coord.WithClient([]string{url}, nodetest.ClientAuth())),
		concord.WithTracerProvider(tp),
	}, opts...)...)
}

// TestAppTracingAcrossApps runs two Apps with tracer providers of their
// own, so that a trace can only cross between them in request headers:
// App B serves GreeterService, App A serves WelcomeService, whose handler
// calls GreeterService through A's App.Client (discovery, balancing and
// retries included), over each protocol. A traced client calls A. The
// test asserts that the client's span, A's server span, A's client span
// for the downstream call and B's server span form one trace, each the
// child of the one before, the server spans with remote parents. B's
// App.Mutex records its lock wait too.
func TestAppTracingAcrossApps(t *testing.T) {
	node := listeningNode(t, t.TempDir(), freeAddr(t))
	defer node.Close()

	recB := newSpanRecorder(t)
	appB := tracedClientApp(t, node.ClientURL(), recB.tp)
	greeterv1concord.RegisterGreeterService(appB, greeter.Service{})
	urlB, _ := startApp(t, appB)
	waitReadyz(t, urlB, http.StatusOK, 20*time.Second)

	// The App traces its locks too (App.Mutex).
	lctx, lcancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer lcancel()
	mu := appB.Mutex("traced/app")
	token, err := mu.Lock(lctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = mu.Unlock(lctx)
	lockSpan := recB.span(t, "lock.Lock", trace.SpanKindInternal)
	for _, kv := range lockSpan.Attributes {
		if kv.Key == "concord.lock.token" && uint64(kv.Value.AsInt64()) != token {
			t.Errorf("lock.Lock span's token %d, want %d", kv.Value.AsInt64(), token)
		}
	}

	for _, pc := range []struct {
		name string
		p    rpc.Protocol
	}{
		{"connect", rpc.ProtocolConnect},
		{"grpc", rpc.ProtocolGRPC},
		{"grpcweb", rpc.ProtocolGRPCWeb},
	} {
		t.Run(pc.name, func(t *testing.T) {
			recB.exp.Reset()
			recA, recClient := newSpanRecorder(t), newSpanRecorder(t)
			appA := tracedClientApp(t, node.ClientURL(), recA.tp, concord.WithClientOptions(rpc.WithProtocol(pc.p)))
			greeterv1concord.RegisterWelcomeService(appA, greeter.Welcome{Greeter: greeterv1concord.NewGreeterServiceClient(appA)})
			urlA, stopA := startApp(t, appA)
			waitReadyz(t, urlA, http.StatusOK, 20*time.Second)

			conn := rpc.NewConn(urlA, rpc.WithProtocol(pc.p), rpc.WithClientTracing(recClient.tp, nil))
			defer conn.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			res, err := greeterv1concord.NewWelcomeServiceClient(conn).Welcome(ctx, &greeterv1.WelcomeRequest{Name: "trace"})
			if err != nil || res.GetWelcome() != "Hello, trace! Welcome to Concord." {
				t.Fatalf("Welcome: %v, %v", res, err)
			}

			client := recClient.span(t, "greeter.v1.WelcomeService/Welcome", trace.SpanKindClient)
			serverA := recA.span(t, "greeter.v1.WelcomeService/Welcome", trace.SpanKindServer)
			clientA := recA.span(t, "greeter.v1.GreeterService/Greet", trace.SpanKindClient)
			serverB := recB.span(t, "greeter.v1.GreeterService/Greet", trace.SpanKindServer)

			traceID := client.SpanContext.TraceID()
			for _, link := range []struct {
				what          string
				child, parent tracetest.SpanStub
				remote        bool
			}{
				{"A's server span under the client's span", serverA, client, true},
				{"A's downstream client span under A's server span", clientA, serverA, false},
				{"B's server span under A's downstream client span", serverB, clientA, true},
			} {
				if got := link.child.SpanContext.TraceID(); got != traceID {
					t.Errorf("%s: trace %s, want %s", link.what, got, traceID)
				}
				if link.child.Parent.SpanID() != link.parent.SpanContext.SpanID() || link.child.Parent.IsRemote() != link.remote {
					t.Errorf("%s: parent %s (remote %v), want %s (remote %v)", link.what,
						link.child.Parent.SpanID(), link.child.Parent.IsRemote(), link.parent.SpanContext.SpanID(), link.remote)
				}
			}
			if err := stopA(); err != nil {
				t.Errorf("A's Run: %v", err)
			}
		})
	}
}

// TestAppTracingFromEnv: an App given no tracer provider builds one from
// the OTEL_* environment, exports its spans with OTLP over HTTP to the
// configured endpoint, and flushes them when Run ends; without those
// variables it has no tracing at all.
func TestAppTracingFromEnv(t *testing.T) {
	var posts atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" && r.Header.Get("Content-Type") == "application/x-protobuf" {
			posts.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()

	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr(""), concord.WithDataDir(t.TempDir()),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0))
	if app.TracerProvider() != nil {
		t.Fatal("an App without OTEL_* variables has a tracer provider")
	}

	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "60000") // only the flush at the end of Run exports
	app = concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr(""), concord.WithDataDir(t.TempDir()),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0))
	if app.TracerProvider() == nil {
		t.Fatal("OTEL_EXPORTER_OTLP_ENDPOINT is set, but the App has no tracer provider")
	}
	greeterv1concord.RegisterGreeterService(app, greeter.Service{})
	url, stop := startApp(t, app)
	conn := rpc.NewConn(url)
	defer conn.Close()
	if _, err := greeterv1concord.NewGreeterServiceClient(conn).Greet(t.Context(), &greeterv1.GreetRequest{Name: "env"}); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if posts.Load() == 0 {
		t.Fatal("no OTLP export reached the collector by the end of Run")
	}
}
