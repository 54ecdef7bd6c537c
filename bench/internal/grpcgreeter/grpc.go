// Package grpcgreeter serves the greeter on grpc-go, the baseline Concord's
// gRPC performance is compared with. It is apart from package baseline so
// that the raw connect-go greeter binary does not link grpc-go.
package grpcgreeter

import (
	"context"

	"github.com/concordrpc/concord/bench/internal/baseline"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"google.golang.org/grpc"
)

// GreetMethod is the full gRPC method name of Greet.
const GreetMethod = "/greeter.v1.GreeterService/Greet"

// greetServer is the handler type of grpcGreeterDesc.
type greetServer interface {
	Greet(context.Context, *greeterv1.GreetRequest) (*greeterv1.GreetResponse, error)
}

// grpcGreeterDesc is what protoc-gen-go-grpc would generate for Greet; the
// repository generates no grpc-go code, so it is written by hand. Messages
// go through grpc-go's default proto codec.
var grpcGreeterDesc = grpc.ServiceDesc{
	ServiceName: "greeter.v1.GreeterService",
	HandlerType: (*greetServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Greet", Handler: grpcGreetHandler}},
	Metadata:    "greeter/v1/greeter.proto",
}

func grpcGreetHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(greeterv1.GreetRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	s := srv.(greetServer)
	if interceptor == nil {
		return s.Greet(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: GreetMethod}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.Greet(ctx, req.(*greeterv1.GreetRequest))
	})
}

// NewServer returns a grpc-go server, with grpc-go's defaults, serving
// the greeter.
func NewServer() *grpc.Server {
	s := grpc.NewServer()
	s.RegisterService(&grpcGreeterDesc, baseline.Greeter{})
	return s
}
