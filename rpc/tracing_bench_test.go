package rpc_test

import (
	"context"
	"testing"

	"connectrpc.com/connect/v2"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/concordrpc/concord/rpc"
)

// BenchmarkTracingUnsampled measures what tracing adds to a call when an
// SDK provider is installed but samples nothing (the cost row of `make
// bench`): the client interceptor starting a span and injecting its
// context, and the server interceptor extracting it and starting a child,
// without the network. "off" is the same calls without interceptors.
func BenchmarkTracingUnsampled(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	spec := connect.Spec{Procedure: "/bench.v1.Service/Method"}
	for _, tc := range []struct {
		name   string
		server []connect.ServerInterceptor
		client []connect.ClientInterceptor
	}{
		{"off", nil, nil},
		{"on", []connect.ServerInterceptor{rpc.NewTracingInterceptor(tp, nil)},
			[]connect.ClientInterceptor{rpc.NewClientTracingInterceptor(tp, nil, rpc.ProtocolConnect)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := connect.NewServer(tc.server...)
			s.Register(connect.Method{Spec: spec, Handler: func(context.Context, connect.Spec, connect.ServerStream) error { return nil }})
			// The transport of this benchmark hands the client's headers to
			// the server in process, as a wire would.
			client := connect.NewClient(transportFunc(func(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
				ci, _ := connect.CallInfoForClientContext(ctx)
				si := &connect.CallInfo{}
				for k, v := range ci.RequestHeader().All() {
					si.RequestHeader().SetValues(k, v)
				}
				if err := s.Call(context.Background(), spec.Procedure, si, nil); err != nil {
					return nil, err
				}
				return doneStream{}, nil
			}), tc.client...)
			b.ReportAllocs()
			for b.Loop() {
				ctx, _ := connect.NewClientContext(context.Background())
				stream, err := client.CallClientStream(ctx, spec)
				if err != nil {
					b.Fatal(err)
				}
				_ = stream.Close()
			}
		})
	}
}

type transportFunc func(context.Context, connect.Spec) (connect.ClientStream, error)

func (f transportFunc) NewClientStream(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
	return f(ctx, spec)
}

// doneStream is a finished stream.
type doneStream struct{}

func (doneStream) SendHeaders() error { return nil }
func (doneStream) Send(any) error     { return nil }
func (doneStream) CloseSend() error   { return nil }
func (doneStream) Receive(any) error  { return nil }
func (doneStream) Close() error       { return nil }
