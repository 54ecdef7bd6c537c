package rpc_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/rpc"
)

// Tracing on both sides of a call: the client's span goes out in the
// traceparent header, and the server's span is its child in the same
// trace. An App does this itself from the OTEL_* environment or
// concord.WithTracerProvider.
func ExampleWithTracing() {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	prop := propagation.TraceContext{}

	srv := rpc.NewServer(rpc.WithTracing(tp, prop), rpc.WithLogger(slog.New(slog.DiscardHandler)))
	greeterv1concord.RegisterGreeterService(srv, greeter.Service{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()

	conn := rpc.NewConn("http://"+ln.Addr().String(), rpc.WithClientTracing(tp, prop))
	if _, err := greeterv1concord.NewGreeterServiceClient(conn).Greet(context.Background(), &greeterv1.GreetRequest{Name: "Ada"}); err != nil {
		panic(err)
	}
	conn.Close()
	stop()
	<-done

	var server, client tracetest.SpanStub
	for _, s := range exp.GetSpans() { // ended spans, in the order they ended
		if s.SpanKind == trace.SpanKindServer {
			server = s
		} else {
			client = s
		}
	}
	fmt.Println(server.SpanKind, server.Name)
	fmt.Println(client.SpanKind, client.Name)
	fmt.Println("one trace:", server.SpanContext.TraceID() == client.SpanContext.TraceID(),
		"server's parent is the client:", server.Parent.SpanID() == client.SpanContext.SpanID())
	// Output:
	// server greeter.v1.GreeterService/Greet
	// client greeter.v1.GreeterService/Greet
	// one trace: true server's parent is the client: true
}
