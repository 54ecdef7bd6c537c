package concord_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/concordrpc/concord"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/rpc"
)

// An App traced with a tracer provider of the caller's (here one that
// keeps spans in memory; in production, one that exports them, or none
// at all and the OTEL_* environment variables). A traced client's call
// carries its trace context to the App, whose server span continues it.
func ExampleWithTracerProvider() {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())

	dir, _ := os.MkdirTemp("", "concord-example-")
	defer os.RemoveAll(dir)
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr(""), concord.WithDataDir(dir),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithTracerProvider(tp))
	greeterv1concord.RegisterGreeterService(app, greeter.Service{})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()

	addr, _ := app.Server().Addr(ctx)
	conn := rpc.NewConn("http://"+addr.String(), rpc.WithClientTracing(tp, nil))
	defer conn.Close()
	if _, err := greeterv1concord.NewGreeterServiceClient(conn).Greet(ctx, &greeterv1.GreetRequest{Name: "Ada"}); err != nil {
		panic(err)
	}
	stop()
	<-done // the server drained: every span has ended
	got := spans.GetSpans()
	for _, s := range got {
		fmt.Println(s.SpanKind, s.Name)
	}
	fmt.Println("one trace:", got[0].SpanContext.TraceID() == got[1].SpanContext.TraceID())
	// Unordered output:
	// server greeter.v1.GreeterService/Greet
	// client greeter.v1.GreeterService/Greet
	// one trace: true
}
