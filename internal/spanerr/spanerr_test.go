package spanerr_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/concordrpc/concord/internal/spanerr"
)

func TestSetBoundsTheText(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	_, span := tp.Tracer("t").Start(context.Background(), "s")
	spanerr.Set(span, errors.New(strings.Repeat("é", 1000))) // 2 bytes each
	span.End()
	got := exp.GetSpans()[0].Status.Description
	if len(got) != spanerr.MaxText || got != strings.Repeat("é", spanerr.MaxText/2) {
		t.Fatalf("status text %d bytes %q, want %d bytes of whole characters", len(got), got[:10], spanerr.MaxText)
	}
	if s := spanerr.Truncate("aé", 2); s != "a" {
		t.Fatalf("Truncate cut a character: %q", s)
	}
}
