package rpc_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/rpc"
)

// recorder is a tracer provider whose spans an in-memory exporter keeps,
// exported as each span ends.
type recorder struct {
	tp  *sdktrace.TracerProvider
	exp *tracetest.InMemoryExporter
}

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return &recorder{tp: tp, exp: exp}
}

// wait returns the ended spans once there are at least n, failing after
// 10s (a server span ends after the handler returns, which can be after
// the client has its answer).
func (r *recorder) wait(t *testing.T, n int) tracetest.SpanStubs {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		if spans := r.exp.GetSpans(); len(spans) >= n {
			return spans
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%d spans within 10s, want %d: %v", len(r.exp.GetSpans()), n, names(r.exp.GetSpans()))
	return nil
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name+"/"+s.SpanKind.String())
	}
	return out
}

// only returns the one span of kind in spans.
func only(t *testing.T, spans tracetest.SpanStubs, kind trace.SpanKind) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range spans {
		if s.SpanKind == kind {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s spans, want 1: %v", len(found), kind, names(spans))
	}
	return found[0]
}

func attr(s tracetest.SpanStub, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func wantAttr(t *testing.T, s tracetest.SpanStub, key string, want any) {
	t.Helper()
	v, ok := attr(s, key)
	if !ok {
		t.Errorf("%s span %s: no attribute %s", s.SpanKind, s.Name, key)
		return
	}
	if got := v.AsInterface(); got != want {
		t.Errorf("%s span %s: %s = %v (%T), want %v (%T)", s.SpanKind, s.Name, key, got, got, want, want)
	}
}

func noAttr(t *testing.T, s tracetest.SpanStub, key string) {
	t.Helper()
	if v, ok := attr(s, key); ok {
		t.Errorf("%s span %s: unexpected %s = %v", s.SpanKind, s.Name, key, v.AsInterface())
	}
}

var protocols = []struct {
	name   string
	p      rpc.Protocol
	system string
}{
	{"connect", rpc.ProtocolConnect, "connect_rpc"},
	{"grpc", rpc.ProtocolGRPC, "grpc"},
	{"grpcweb", rpc.ProtocolGRPCWeb, "grpc"},
}

// TestTracingSpans makes real calls over each protocol from a traced Conn
// to a traced server, each side with its own tracer provider (so the
// trace can only cross in the request headers), and checks both spans:
// names, kinds, the RPC semantic conventions' attributes, the status for
// a success, a refusal (invalid_argument: the client's error, not the
// server's) and a server failure (a panic, internal: both sides' error),
// and that the server span is the client span's remote child.
func TestTracingSpans(t *testing.T) {
	for _, pc := range protocols {
		t.Run(pc.name, func(t *testing.T) {
			server, client := newRecorder(t), newRecorder(t)
			ts := startServer(t, quietServer(rpc.WithTracing(server.tp, nil)), &testGreeter{})
			conn := rpc.NewConn(ts.url, rpc.WithProtocol(pc.p), rpc.WithClientTracing(client.tp, nil))
			defer conn.Close()
			greeter := greeterv1concord.NewGreeterServiceClient(conn)
			for _, tc := range []struct {
				name, req   string
				code        connect.Code
				serverError bool
			}{
				{"ok", "trace", 0, false},
				{"refused", "slow:nonsense", connect.CodeInvalidArgument, false},
				{"panic", "panic", connect.CodeInternal, true},
			} {
				t.Run(tc.name, func(t *testing.T) {
					server.exp.Reset()
					client.exp.Reset()
					_, err := greeter.Greet(t.Context(), &greeterv1.GreetRequest{Name: tc.req})
					if got := connect.Code(0); err != nil {
						got = connect.CodeOf(err)
						if got != tc.code {
							t.Fatalf("Greet: %v, want code %v", err, tc.code)
						}
					} else if tc.code != 0 {
						t.Fatalf("Greet succeeded, want %v", tc.code)
					}
					cs := only(t, client.wait(t, 1), trace.SpanKindClient)
					ss := only(t, server.wait(t, 1), trace.SpanKindServer)
					for _, s := range []tracetest.SpanStub{cs, ss} {
						if s.Name != "greeter.v1.GreeterService/Greet" {
							t.Errorf("%s span named %q", s.SpanKind, s.Name)
						}
						wantAttr(t, s, "rpc.system", pc.system)
						wantAttr(t, s, "rpc.service", "greeter.v1.GreeterService")
						wantAttr(t, s, "rpc.method", "Greet")
						if pc.system == "grpc" {
							wantAttr(t, s, "rpc.grpc.status_code", int64(tc.code))
							noAttr(t, s, "rpc.connect_rpc.error_code")
						} else if tc.code != 0 {
							wantAttr(t, s, "rpc.connect_rpc.error_code", tc.code.String())
						} else {
							noAttr(t, s, "rpc.connect_rpc.error_code")
						}
					}
					if ss.SpanContext.TraceID() != cs.SpanContext.TraceID() {
						t.Errorf("server span in trace %s, client span in %s", ss.SpanContext.TraceID(), cs.SpanContext.TraceID())
					}
					if ss.Parent.SpanID() != cs.SpanContext.SpanID() || !ss.Parent.IsRemote() {
						t.Errorf("server span's parent %s (remote %v), want the client span %s", ss.Parent.SpanID(), ss.Parent.IsRemote(), cs.SpanContext.SpanID())
					}
					if cs.Parent.IsValid() {
						t.Errorf("client span has parent %s, want a root span", cs.Parent.SpanID())
					}
					wantStatus := func(s tracetest.SpanStub, isErr bool) {
						t.Helper()
						if isErr != (s.Status.Code == codes.Error) {
							t.Errorf("%s span status %v %q, want error %v", s.SpanKind, s.Status.Code, s.Status.Description, isErr)
						}
					}
					wantStatus(cs, tc.code != 0)
					wantStatus(ss, tc.serverError)
				})
			}
		})
	}
}

// TestTracingContinuesCallersTrace: a call made inside a span (as a
// handler's downstream call is) gets a client span that is that span's
// child, and the server's span joins the same trace; a server-streaming
// call's span ends when the stream does.
func TestTracingContinuesCallersTrace(t *testing.T) {
	server, client := newRecorder(t), newRecorder(t)
	ts := startServer(t, quietServer(rpc.WithTracing(server.tp, nil)), &testGreeter{})
	conn := rpc.NewConn(ts.url, rpc.WithClientTracing(client.tp, nil))
	defer conn.Close()
	ctx, parent := client.tp.Tracer("test").Start(t.Context(), "parent")
	stream, err := greeterv1concord.NewGreeterServiceClient(conn).GreetMany(ctx, &greeterv1.GreetManyRequest{Names: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range 10 {
		if _, err = stream.Receive(); err != nil {
			break
		}
		n++
	}
	if !errors.Is(err, io.EOF) || n != 2 {
		t.Fatalf("received %d, then %v; want 2, then EOF", n, err)
	}
	_ = stream.Close()
	parent.End()
	spans := client.wait(t, 2)
	cs := only(t, spans, trace.SpanKindClient)
	if cs.Name != "greeter.v1.GreeterService/GreetMany" || cs.Status.Code == codes.Error {
		t.Errorf("client span %q status %v", cs.Name, cs.Status)
	}
	if cs.Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("client span's parent %s, want %s", cs.Parent.SpanID(), parent.SpanContext().SpanID())
	}
	ss := only(t, server.wait(t, 1), trace.SpanKindServer)
	if ss.SpanContext.TraceID() != parent.SpanContext().TraceID() || ss.Parent.SpanID() != cs.SpanContext.SpanID() {
		t.Errorf("server span in trace %s under %s, want trace %s under %s",
			ss.SpanContext.TraceID(), ss.Parent.SpanID(), parent.SpanContext().TraceID(), cs.SpanContext.SpanID())
	}
}

// TestTracingRetries: one client span covers a call whose first attempt
// failed and was retried, with an rpc.retry event, and both attempts'
// server spans are its children.
func TestTracingRetries(t *testing.T) {
	server, client := newRecorder(t), newRecorder(t)
	g := &testGreeter{}
	g.failN.Store(1)
	ts := startServer(t, quietServer(rpc.WithTracing(server.tp, nil)), g)
	conn := rpc.NewConn(ts.url, rpc.WithClientTracing(client.tp, nil))
	defer conn.Close()
	if _, err := greeterv1concord.NewGreeterServiceClient(conn).Greet(t.Context(), &greeterv1.GreetRequest{Name: "again"}); err != nil {
		t.Fatal(err)
	}
	cs := only(t, client.wait(t, 1), trace.SpanKindClient)
	if cs.Status.Code == codes.Error {
		t.Errorf("client span status %v after a successful retry", cs.Status)
	}
	retries := 0
	for _, e := range cs.Events {
		if e.Name == "rpc.retry" {
			retries++
		}
	}
	if retries != 1 {
		t.Errorf("%d rpc.retry events, want 1: %v", retries, cs.Events)
	}
	spans := server.wait(t, 2)
	for _, ss := range spans {
		if ss.Parent.SpanID() != cs.SpanContext.SpanID() {
			t.Errorf("server span under %s, want the client span %s", ss.Parent.SpanID(), cs.SpanContext.SpanID())
		}
	}
}

// TestTracingHostileHeaders sends raw Connect calls whose traceparent is
// malformed, oversized or repeated: each call succeeds and its server
// span starts a new trace (no remote parent) rather than taking any of
// it.
func TestTracingHostileHeaders(t *testing.T) {
	server := newRecorder(t)
	ts := startServer(t, quietServer(rpc.WithTracing(server.tp, nil)), &testGreeter{})
	valid := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, tc := range []struct {
		name   string
		values []string
	}{
		{"garbage", []string{"not a traceparent"}},
		{"zero ids", []string{"00-00000000000000000000000000000000-0000000000000000-01"}},
		{"bad version", []string{"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
		{"oversized", []string{valid + strings.Repeat("-x", 8<<10)}},
		{"non-hex", []string{"00-0af7651916cd43dd8448eb211c8031zz-b7ad6b7169203331-01"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server.exp.Reset()
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, ts.url+"/greeter.v1.GreeterService/Greet", strings.NewReader(`{"name":"x"}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			for _, v := range tc.values {
				req.Header.Add("Traceparent", v)
			}
			req.Header.Set("Tracestate", strings.Repeat("k=v,", 2000))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d", res.StatusCode)
			}
			ss := only(t, server.wait(t, 1), trace.SpanKindServer)
			if ss.Parent.IsValid() {
				t.Errorf("server span took parent %s from %q", ss.Parent.SpanID(), tc.values)
			}
		})
	}
}

// TestTracingOffInstallsNothing: without WithTracing a server's calls
// carry no span, even when the caller sends a traceparent (the handler's
// context has no valid span context).
func TestTracingOffInstallsNothing(t *testing.T) {
	seen := make(chan trace.SpanContext, 1)
	ts := startServer(t, quietServer(rpc.WithInterceptors(func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			select {
			case seen <- trace.SpanContextFromContext(ctx):
			default:
			}
			return next(ctx, spec, stream)
		}
	})), &testGreeter{})
	client := newRecorder(t)
	conn := rpc.NewConn(ts.url, rpc.WithClientTracing(client.tp, nil))
	defer conn.Close()
	if _, err := greeterv1concord.NewGreeterServiceClient(conn).Greet(t.Context(), &greeterv1.GreetRequest{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if sc := <-seen; sc.IsValid() {
		t.Errorf("untraced server's handler sees span context %v", sc)
	}
}

// FuzzTracingHeaders feeds arbitrary traceparent and tracestate values to
// a traced server's interceptor chain: it must never panic, and the call
// must reach the handler.
func FuzzTracingHeaders(f *testing.F) {
	f.Add("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "congo=t61rcWkgMzE")
	f.Add("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", "a=b,c")
	f.Add("", "")
	f.Add("zz", "=,=,=")
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	s := connect.NewServer(rpc.NewTracingInterceptor(tp, nil))
	reached := 0
	s.Register(connect.Method{
		Spec:    connect.Spec{Procedure: "/fuzz.v1.Service/Method"},
		Handler: func(context.Context, connect.Spec, connect.ServerStream) error { reached++; return nil },
	})
	f.Fuzz(func(t *testing.T, traceparent, tracestate string) {
		info := &connect.CallInfo{}
		info.RequestHeader().Set("Traceparent", traceparent)
		info.RequestHeader().Set("Tracestate", tracestate)
		before := reached
		if err := s.Call(context.Background(), "/fuzz.v1.Service/Method", info, nil); err != nil {
			t.Fatal(err)
		}
		if reached != before+1 {
			t.Fatal("handler not reached")
		}
		exp.Reset()
	})
}

// TestTracingBoundsCallerChosenNames: behind an unknown-procedure handler
// callers choose the procedure; its span name is cut to 256 bytes.
func TestTracingBoundsCallerChosenNames(t *testing.T) {
	rec := newRecorder(t)
	s := connect.NewServer(rpc.NewTracingInterceptor(rec.tp, nil))
	s.SetUnknownHandler(func(context.Context, connect.Spec, connect.ServerStream) error { return nil })
	long := "/x.v1.S/" + strings.Repeat("m", 10_000)
	for i := range 3 {
		if err := s.Call(context.Background(), long+strings.Repeat("n", i), &connect.CallInfo{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, sp := range rec.wait(t, 3) {
		if len(sp.Name) > 256 {
			t.Fatalf("span name of %d bytes", len(sp.Name))
		}
	}
}

// TestTracingUnreachableServer: a call that never reaches a server still
// ends its client span, as an error with the code the caller got.
func TestTracingUnreachableServer(t *testing.T) {
	ln := listen(t)
	url := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	client := newRecorder(t)
	conn := rpc.NewConn(url, rpc.WithClientTracing(client.tp, nil))
	defer conn.Close()
	_, err := greeterv1concord.NewGreeterServiceClient(conn).Shout(t.Context(), &greeterv1.ShoutRequest{Name: "x"})
	if err == nil {
		t.Fatal("call to a closed port succeeded")
	}
	cs := only(t, client.wait(t, 1), trace.SpanKindClient)
	if cs.Status.Code != codes.Error {
		t.Errorf("client span status %v, want error", cs.Status)
	}
	wantAttr(t, cs, "rpc.connect_rpc.error_code", connect.CodeOf(err).String())
}

// TestTracingUnsampledPropagates: with a provider that samples nothing,
// the client still sends a traceparent with a span ID of its own and the
// sampled flag off, in the caller's trace, and the handler's context
// carries a valid unsampled span in that trace, under the client's span;
// with the default propagator (nil: W3C Trace Context) and a composite
// one.
func TestTracingUnsampledPropagates(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	spec := connect.Spec{Procedure: "/test.v1.Service/Method"}
	for _, prop := range []propagation.TextMapPropagator{nil, propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})} {
		var header string
		var handler trace.SpanContext
		s := connect.NewServer(rpc.NewTracingInterceptor(tp, prop))
		s.Register(connect.Method{Spec: spec, Handler: func(ctx context.Context, _ connect.Spec, _ connect.ServerStream) error {
			handler = trace.SpanFromContext(ctx).SpanContext()
			return nil
		}})
		client := connect.NewClient(transportFunc(func(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
			ci, _ := connect.CallInfoForClientContext(ctx)
			header = ci.RequestHeader().Get("Traceparent")
			si := &connect.CallInfo{}
			for k, v := range ci.RequestHeader().All() {
				si.RequestHeader().SetValues(k, v)
			}
			return doneStream{}, s.Call(context.Background(), spec.Procedure, si, nil)
		}), rpc.NewClientTracingInterceptor(tp, prop, rpc.ProtocolConnect))
		parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, Remote: true})
		ctx, _ := connect.NewClientContext(trace.ContextWithRemoteSpanContext(context.Background(), parent))
		stream, err := client.CallClientStream(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.Close()
		prefix := "00-" + parent.TraceID().String() + "-"
		if len(header) != 55 || !strings.HasPrefix(header, prefix) || !strings.HasSuffix(header, "-00") ||
			strings.Contains(header, parent.SpanID().String()) || strings.Contains(header, "-0000000000000000-") {
			t.Errorf("%T: traceparent %q, want %s<new span ID>-00", prop, header, prefix)
		}
		if !handler.IsValid() || handler.IsSampled() || handler.IsRemote() || handler.TraceID() != parent.TraceID() ||
			handler.SpanID() == parent.SpanID() || strings.Contains(header, handler.SpanID().String()) {
			t.Errorf("%T: handler's span %+v (traceparent %q), want a new unsampled span in trace %s", prop, handler, header, parent.TraceID())
		}
	}
}
