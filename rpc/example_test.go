package rpc_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/rpc"
)

// A server with the default chain, and a client that reaches it at a fixed
// URL. Generated Register and New...Client functions apply the policies
// declared in the .proto.
func ExampleServer() {
	srv := rpc.NewServer(rpc.WithLogger(slog.New(slog.DiscardHandler)))
	greeterv1concord.RegisterGreeterService(srv, greeter.Service{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()

	conn := rpc.NewConn("http://" + ln.Addr().String())
	defer conn.Close()
	client := greeterv1concord.NewGreeterServiceClient(conn)
	res, err := client.Greet(context.Background(), &greeterv1.GreetRequest{Name: "Ada"})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.GetGreeting())

	_, err = client.Greet(context.Background(), &greeterv1.GreetRequest{Name: ""})
	fmt.Println(err)

	stop() // drain and stop
	fmt.Println(<-done)
	// Output:
	// Hello, Ada!
	// invalid_argument: validation error: name: must be at least 1 characters
	// <nil>
}

// A client that finds instances through a Resolver instead of a fixed URL.
func ExampleNewResolvingConn() {
	r := rpc.NewStaticResolver(map[string][]string{
		greeterv1concord.GreeterServiceDiscoveryName: {"http://127.0.0.1:8080", "http://127.0.0.1:8081"},
	})
	conn := rpc.NewResolvingConn(r)
	defer conn.Close()
	client := greeterv1concord.NewGreeterServiceClient(conn)
	_ = client // calls go round-robin to the two instances
	fmt.Println(greeterv1concord.GreeterServiceDiscoveryName)
	// Output: greeter
}
