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

// instanceGreeter is the example greeter, saying which instance answered.
type instanceGreeter struct {
	greeter.Service
	instance string
}

func (g instanceGreeter) Greet(_ context.Context, req *greeterv1.GreetRequest) (*greeterv1.GreetResponse, error) {
	return &greeterv1.GreetResponse{Greeting: "Hello, " + req.GetName() + ", from " + g.instance}, nil
}

// A client that finds instances through a Resolver instead of a fixed URL.
// Two instances serve the greeter; a static resolver maps its discovery
// name to both, and calls take them in turn (round robin here, so that the
// output is fixed; the default, power of two choices, prefers the less
// loaded).
func ExampleNewResolvingConn() {
	var urls []string
	var stops []func() error
	for _, name := range []string{"a", "b"} {
		srv := rpc.NewServer(rpc.WithLogger(slog.New(slog.DiscardHandler)))
		greeterv1concord.RegisterGreeterService(srv, instanceGreeter{instance: name})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx, ln) }()
		urls = append(urls, "http://"+ln.Addr().String())
		stops = append(stops, func() error { stop(); return <-done })
	}

	r := rpc.NewStaticResolver(map[string][]string{greeterv1concord.GreeterServiceDiscoveryName: urls})
	conn := rpc.NewResolvingConn(r, rpc.WithBalancing(rpc.BalanceRoundRobin))
	client := greeterv1concord.NewGreeterServiceClient(conn)
	for _, name := range []string{"Ada", "Grace", "Edsger"} {
		res, err := client.Greet(context.Background(), &greeterv1.GreetRequest{Name: name})
		if err != nil {
			panic(err)
		}
		fmt.Println(res.GetGreeting())
	}

	conn.Close() // idle connections first, so that the servers drain at once
	for _, stop := range stops {
		if err := stop(); err != nil {
			panic(err)
		}
	}
	// Output:
	// Hello, Ada, from a
	// Hello, Grace, from b
	// Hello, Edsger, from a
}
