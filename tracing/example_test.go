package tracing_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/tracing"
)

// A process that is not a concord.App traces its server the way an App
// does: with the provider the OTEL_* environment configures, if any, and
// no tracing code at all otherwise. (Run it with, for example,
// OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 to export.)
func ExampleFromEnv() {
	ctx := context.Background()
	opts := []rpc.ServerOption{rpc.WithLogger(slog.New(slog.DiscardHandler))}
	tp, err := tracing.FromEnv(ctx)
	switch {
	case err != nil:
		fmt.Println("tracing misconfigured:", err)
	case tp == nil:
		fmt.Println("tracing off: no OTEL_* exporter configured")
	default:
		defer tp.Shutdown(ctx) // flushes buffered spans
		prop, _ := tracing.Propagator()
		opts = append(opts, rpc.WithTracing(tp, prop))
		fmt.Println("tracing on")
	}
	srv := rpc.NewServer(opts...)
	_ = srv // register services and Serve
	// Output: tracing off: no OTEL_* exporter configured
}
