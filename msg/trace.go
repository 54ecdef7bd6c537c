package msg

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/concordrpc/concord/internal/spanerr"
)

// tracerName is the instrumentation scope of the package's spans.
const tracerName = "github.com/concordrpc/concord/msg"

// Span attributes (OpenTelemetry messaging conventions).
const (
	attrSystem      = attribute.Key("messaging.system")
	attrDestination = attribute.Key("messaging.destination.name")
	attrOperation   = attribute.Key("messaging.operation.name")
	attrOpType      = attribute.Key("messaging.operation.type")
	attrMessageID   = attribute.Key("messaging.message.id")
	attrConsumer    = attribute.Key("messaging.consumer.group.name")
	attrDeliveries  = attribute.Key("concord.msg.deliveries")
	attrDuplicate   = attribute.Key("concord.msg.duplicate") // the inbox had it: the handler did not run
)

// Bounds on the trace context a row carries to the relay's headers.
const (
	maxTraceFields   = 8
	maxTraceValueLen = 8 << 10
)

// WithTracing traces messages with tp, carrying trace context with prop
// (nil: propagation.TraceContext, W3C traceparent and tracestate).
// Outbox.Add records a producer span "publish <topic>" in the caller's
// trace and stores its context in the outbox row; the relay sends it as
// message headers; a Subscription's handler runs inside a consumer span
// "process <topic>" whose parent is that producer span, so the consumer's
// work (and the calls its handler makes with the context it gets) joins
// the producer's trace. A header that does not parse starts a new trace.
// The SQL store keeps no trace context (its outbox table has no column
// for it): its messages' process spans start new traces. Applies to
// NewOutbox and Subscribe. Default: no spans.
func WithTracing(tp trace.TracerProvider, prop propagation.TextMapPropagator) Option {
	return optionFunc(func(c *config) {
		if tp == nil {
			c.tracer = nil
			return
		}
		if prop == nil {
			prop = propagation.TraceContext{}
		}
		c.tracer, c.propagator = tp.Tracer(tracerName), prop
	})
}

// startPublish starts m's producer span and returns the trace context to
// store with its row; nil without tracing.
func (c *config) startPublish(ctx context.Context, topic string) (trace.Span, map[string]string) {
	if c.tracer == nil {
		return nil, nil
	}
	ctx, span := c.tracer.Start(ctx, "publish "+topic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attrSystem.String("nats"), attrDestination.String(topic),
			attrOperation.String("publish"), attrOpType.String("send")))
	carrier := propagation.MapCarrier{}
	c.propagator.Inject(ctx, carrier)
	return span, carrier
}

// endSpan records err on span (if any) and ends it.
func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	spanerr.Set(span, err)
	span.End()
}

// setTraceHeaders copies a row's trace context to h, bounded.
func setTraceHeaders(h nats.Header, tc map[string]string) {
	n := 0
	for k, v := range tc {
		if n == maxTraceFields {
			return
		}
		if k == "" || len(k) > 64 || len(v) > maxTraceValueLen {
			continue
		}
		propagation.HeaderCarrier(h).Set(k, v)
		n++
	}
}

// startProcess starts a delivery's consumer span, continuing the trace in
// the message's headers; nil without tracing.
func (c *config) startProcess(ctx context.Context, h nats.Header, consumer string, d *Delivery) (context.Context, trace.Span) {
	if c.tracer == nil {
		return ctx, nil
	}
	ctx = c.propagator.Extract(ctx, propagation.HeaderCarrier(h))
	return c.tracer.Start(ctx, "process "+d.Topic, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attrSystem.String("nats"), attrDestination.String(d.Topic),
			attrOperation.String("process"), attrOpType.String("process"),
			attrMessageID.String(d.ID), attrConsumer.String(consumer), attrDeliveries.Int(d.Deliveries)))
}
