package lock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/concordrpc/concord/coord/lock"
)

func spanAttr(s tracetest.SpanStub, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// TestLockWaitSpans: with WithTracerProvider, a Lock that waits for
// another holder records a span that covers the wait, names the lock and
// carries the granted fencing token, under the caller's span; a TryLock
// that finds the lock held records a span that says it did not acquire
// it, without an error status; Campaign records its term.
func TestLockWaitSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	b := lock.FromNode(openNode(t))
	ctx := within(t, 30*time.Second)

	holder := lock.NewMutex(b, "traced/1", lock.WithTTL(5*time.Second))
	if _, err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	waiter := lock.NewMutex(b, "traced/1", lock.WithTTL(5*time.Second), lock.WithTracerProvider(tp))
	if _, err := waiter.TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock: %v, want ErrLocked", err)
	}
	const hold = 300 * time.Millisecond
	go func() {
		time.Sleep(hold)
		_ = holder.Unlock(context.Background())
	}()
	pctx, parent := tp.Tracer("test").Start(ctx, "caller")
	token, err := waiter.Lock(pctx)
	parent.End()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = waiter.Unlock(context.Background()) }()

	byName := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		byName[s.Name] = s
	}
	try, ok := byName["lock.TryLock"]
	if !ok {
		t.Fatalf("no lock.TryLock span in %v", exp.GetSpans())
	}
	if v, _ := spanAttr(try, "concord.lock.acquired"); v.AsBool() || try.Status.Code == codes.Error {
		t.Errorf("refused TryLock span: acquired %v, status %v", v.AsBool(), try.Status)
	}
	wait, ok := byName["lock.Lock"]
	if !ok {
		t.Fatalf("no lock.Lock span in %v", exp.GetSpans())
	}
	if v, _ := spanAttr(wait, "concord.lock.name"); v.AsString() != "traced/1" {
		t.Errorf("lock.Lock span's name attribute %q", v.AsString())
	}
	if v, ok := spanAttr(wait, "concord.lock.token"); !ok || uint64(v.AsInt64()) != token {
		t.Errorf("lock.Lock span's token %v (set %v), want %d", v.AsInt64(), ok, token)
	}
	if d := wait.EndTime.Sub(wait.StartTime); d < hold/2 {
		t.Errorf("lock.Lock span lasted %v; the wait was about %v", d, hold)
	}
	if wait.Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("lock.Lock span's parent %s, want the caller's %s", wait.Parent.SpanID(), parent.SpanContext().SpanID())
	}

	e := lock.NewElection(b, "traced-election", lock.WithTTL(5*time.Second), lock.WithTracerProvider(tp))
	term, err := e.Campaign(ctx, "me")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Resign(context.Background()) }()
	var campaign *tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == "lock.Campaign" {
			campaign = &s
		}
	}
	if campaign == nil {
		t.Fatal("no lock.Campaign span")
	}
	if v, _ := spanAttr(*campaign, "concord.lock.token"); uint64(v.AsInt64()) != term {
		t.Errorf("lock.Campaign span's token %d, want the term %d", v.AsInt64(), term)
	}
}
