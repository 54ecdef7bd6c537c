package msg_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/msg"
)

// TestTraceContinuesFromProducerToConsumer: a message added to a traced
// outbox inside a span gets a producer span in that trace; the consumer,
// traced with a provider of its own (so the trace can only cross in the
// message's headers, through the outbox row and the relay), handles it
// in a consumer span that is the producer span's remote child, and the
// handler's context carries that span. A message whose traceparent header
// is malformed is still handled, in a span that starts a new trace.
func TestTraceContinuesFromProducerToConsumer(t *testing.T) {
	prodExp, consExp := tracetest.NewInMemoryExporter(), tracetest.NewInMemoryExporter()
	prodTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(prodExp))
	consTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(consExp))
	defer func() { _ = prodTP.Shutdown(context.Background()); _ = consTP.Shutdown(context.Background()) }()

	node := nodetest.Open(t)
	db, err := localstore.Open(t.TempDir(), localstore.WithGCInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	store := msg.Badger(db)
	ob := msg.NewOutbox(store, msg.WithTracing(prodTP, nil))

	var mu sync.Mutex
	handled := map[string]trace.SpanContext{} // message ID -> the handler's span context
	subscribe(t, node, store, "traced", "orders.created", func(ctx context.Context, _ *localstore.Tx, d *msg.Delivery) error {
		mu.Lock()
		handled[d.ID] = trace.SpanContextFromContext(ctx)
		mu.Unlock()
		return nil
	}, []msg.Option{msg.WithTracing(consTP, nil)})
	r := msg.StartRelay(node, ob, fast()...)
	t.Cleanup(func() { _ = r.Close() })

	ctx, parent := prodTP.Tracer("test").Start(context.Background(), "place order")
	var id string
	if err := db.Update(func(tx *localstore.Tx) error {
		id, err = ob.Add(ctx, tx, msg.Message{Topic: "orders.created", Key: "order-1", Payload: []byte("x")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	parent.End()
	ob.Notify()

	// A message published past the outbox, with a hostile traceparent.
	const hostileID = "0123456789abcdef0123456789abcdef"
	m := nats.NewMsg("concord.msg.orders.created.u")
	m.Header.Set("Concord-Id", hostileID)
	m.Header.Set("Nats-Msg-Id", hostileID)
	m.Header.Set("Traceparent", "00-zzzz-not-a-trace-context")
	if err := node.Conn().PublishMsg(m); err != nil {
		t.Fatal(err)
	}

	waitFor(t, 15*time.Second, "both messages handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == 2
	})
	var publish, process, hostile *tracetest.SpanStub
	waitFor(t, 10*time.Second, "the spans ended", func() bool {
		publish, process, hostile = nil, nil, nil
		for _, s := range prodExp.GetSpans() {
			if s.Name == "publish orders.created" {
				publish = &s
			}
		}
		for _, s := range consExp.GetSpans() {
			if s.Name != "process orders.created" {
				continue
			}
			for _, kv := range s.Attributes {
				if kv.Key == "messaging.message.id" && kv.Value.AsString() == id {
					process = &s
				} else if kv.Key == "messaging.message.id" && kv.Value.AsString() == hostileID {
					hostile = &s
				}
			}
		}
		return publish != nil && process != nil && hostile != nil
	})
	if publish.SpanKind != trace.SpanKindProducer || publish.Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("publish span: kind %v under %s, want a producer span under the caller's %s",
			publish.SpanKind, publish.Parent.SpanID(), parent.SpanContext().SpanID())
	}
	if process.SpanKind != trace.SpanKindConsumer || process.Status.Code == codes.Error {
		t.Errorf("process span: kind %v status %v", process.SpanKind, process.Status)
	}
	if process.SpanContext.TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("process span in trace %s, want the producer's %s", process.SpanContext.TraceID(), parent.SpanContext().TraceID())
	}
	if process.Parent.SpanID() != publish.SpanContext.SpanID() || !process.Parent.IsRemote() {
		t.Errorf("process span under %s (remote %v), want the publish span %s", process.Parent.SpanID(), process.Parent.IsRemote(), publish.SpanContext.SpanID())
	}
	mu.Lock()
	defer mu.Unlock()
	if handled[id].SpanID() != process.SpanContext.SpanID() {
		t.Errorf("handler's context carries span %s, want the process span %s", handled[id].SpanID(), process.SpanContext.SpanID())
	}
	if hostile.Parent.IsValid() {
		t.Errorf("a malformed traceparent gave the process span parent %s", hostile.Parent.SpanID())
	}
}
