package tcc

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/concordrpc/concord/internal/spanerr"
)

// tracerName is the instrumentation scope of the coordinator's spans.
const tracerName = "github.com/concordrpc/concord/tcc"

// Span attributes.
const (
	attrTxID     = attribute.Key("concord.tcc.tx_id")
	attrBranches = attribute.Key("concord.tcc.branches")
	attrState    = attribute.Key("concord.tcc.state")
	attrPhase    = attribute.Key("concord.tcc.phase")
)

// noSpan is what span-starting helpers return without a tracer: ending it
// does nothing (unlike ending the span a context carries).
var noSpan = trace.SpanFromContext(context.Background())

// WithTracerProvider makes the coordinator record a "tcc.Transaction" span
// for each Run, with the transaction's ID (concord.tcc.tx_id) and its
// last state (concord.tcc.state), and phase spans: "tcc.Try" under it for
// the Trys, and "tcc.Confirm" or "tcc.Cancel" for the decided phase,
// under the transaction's span when Run drives it and as a root span
// when recovery does. A phase's calls are the children of its span (with
// a traced rpc.ClientConn, their client spans), so the participants'
// server spans join the transaction's trace. Default: no spans.
func WithTracerProvider(tp trace.TracerProvider) CoordinatorOption {
	return coordOptionFunc(func(c *coordConfig) {
		if tp != nil {
			c.tracer = tp.Tracer(tracerName)
		}
	})
}

// startPhase starts the span of phase of transaction txID, or returns
// noSpan without a tracer.
func (c *Coordinator) startPhase(ctx context.Context, phase Phase, txID string) (context.Context, trace.Span) {
	if c.cfg.tracer == nil {
		return ctx, noSpan
	}
	name := "tcc.Try"
	switch phase {
	case PhaseConfirm:
		name = "tcc.Confirm"
	case PhaseCancel:
		name = "tcc.Cancel"
	}
	return c.cfg.tracer.Start(ctx, name, trace.WithAttributes(attrTxID.String(txID), attrPhase.String(phase.String())))
}

// endSpan records err on span and ends it.
func endSpan(span trace.Span, err error) {
	spanerr.Set(span, err)
	span.End()
}
