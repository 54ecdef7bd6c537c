package tcc_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/concordrpc/concord/coord/txlog"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/tcc"
)

// TestTransactionSpans runs a committed and a refused transaction with a
// traced coordinator and Conn against participants traced with a provider
// of their own, and checks the tree of each trace: tcc.Transaction at the
// root; tcc.Try and then tcc.Confirm (or tcc.Cancel) under it; each
// phase's calls (client spans) under the phase; and each participant's
// server span under its call, in the same trace.
func TestTransactionSpans(t *testing.T) {
	coordExp, partExp := tracetest.NewInMemoryExporter(), tracetest.NewInMemoryExporter()
	coordTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(coordExp))
	partTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(partExp))
	defer func() { _ = coordTP.Shutdown(context.Background()); _ = partTP.Shutdown(context.Background()) }()

	f := &fixture{node: nodetest.Open(t),
		left: startTestParticipant(t, rpc.WithTracing(partTP, nil)), right: startTestParticipant(t, rpc.WithTracing(partTP, nil))}
	f.res = mapResolver{"left": {{ID: "L", BaseURL: f.left.url}}, "right": {{ID: "R", BaseURL: f.right.url}}}
	f.conn = rpc.NewResolvingConn(f.res, rpc.WithClientTracing(coordTP, nil))
	t.Cleanup(func() { f.conn.Close() })
	f.log = txlog.Open(f.node)
	c := f.coordinator(t, tcc.WithTracerProvider(coordTP))

	for _, tc := range []struct {
		name        string
		right       int64
		phase       string // the decided phase's span
		participant string // the decided phase's procedure's method
	}{
		{"commit", plainValue, "tcc.Confirm", "ConfirmReserve"},
		{"refuse", refuse, "tcc.Cancel", "CancelReserve"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			coordExp.Reset()
			partExp.Reset()
			res, err := f.run(t, c, nodetest.Within(t, 20*time.Second), "traced-"+tc.name, plainValue, tc.right)
			if (err == nil) != (tc.right != refuse) {
				t.Fatalf("Run: %v", err)
			}
			f.gone(t, res.ID, 5*time.Second) // the phase and its span ended
			// Two Trys, and the decided phase on both branches (a
			// refused Try needs no Cancel call, but the coordinator
			// sends one to every branch).
			spans := waitSpans(t, coordExp, 3+4)
			tx := one(t, spans, "tcc.Transaction", trace.SpanKindInternal)
			if tx.Parent.IsValid() {
				t.Errorf("tcc.Transaction has a parent")
			}
			if (tx.Status.Code == codes.Error) != (err != nil) {
				t.Errorf("tcc.Transaction status %v after Run's %v", tx.Status, err)
			}
			try := one(t, spans, "tcc.Try", trace.SpanKindInternal)
			phase := one(t, spans, tc.phase, trace.SpanKindInternal)
			for _, s := range []tracetest.SpanStub{try, phase} {
				if s.Parent.SpanID() != tx.SpanContext.SpanID() || s.SpanContext.TraceID() != tx.SpanContext.TraceID() {
					t.Errorf("%s under %s, want under tcc.Transaction %s", s.Name, s.Parent.SpanID(), tx.SpanContext.SpanID())
				}
			}
			calls := map[string]tracetest.SpanStub{} // client span ID -> span
			for _, s := range spans {
				if s.SpanKind != trace.SpanKindClient {
					continue
				}
				calls[s.SpanContext.SpanID().String()] = s
				want := try
				if s.Name == "concordtest.v1.TestService/"+tc.participant {
					want = phase
				}
				if s.Parent.SpanID() != want.SpanContext.SpanID() {
					t.Errorf("call %s under %s, want under %s", s.Name, s.Parent.SpanID(), want.Name)
				}
			}
			server := waitSpans(t, partExp, 4) // two Trys, two calls of the decided phase
			phaseCalls := 0
			for _, s := range server {
				call, ok := calls[s.Parent.SpanID().String()]
				if !ok || s.SpanContext.TraceID() != tx.SpanContext.TraceID() || call.Name != s.Name {
					t.Errorf("participant span %s (trace %s) is not under a call of the transaction", s.Name, s.SpanContext.TraceID())
				}
				if s.Name == "concordtest.v1.TestService/"+tc.participant {
					phaseCalls++
				}
			}
			if phaseCalls != 2 {
				t.Errorf("%d participant spans of %s, want 2", phaseCalls, tc.participant)
			}
		})
	}
}

// waitSpans returns exp's spans once there are at least n, within 10s.
func waitSpans(t *testing.T, exp *tracetest.InMemoryExporter, n int) tracetest.SpanStubs {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		if spans := exp.GetSpans(); len(spans) >= n {
			return spans
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%d spans within 10s, want at least %d", len(exp.GetSpans()), n)
	return nil
}

func one(t *testing.T, spans tracetest.SpanStubs, name string, kind trace.SpanKind) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name && s.SpanKind == kind {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s spans named %s, want 1", len(found), kind, name)
	}
	return found[0]
}
