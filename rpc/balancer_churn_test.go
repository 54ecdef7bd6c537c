package rpc_test

import (
	"context"
	"sync"
	"testing"
	"time"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/rpc"
)

// churnResolver answers with instances the test sets, per service.
type churnResolver struct {
	mu    sync.Mutex
	insts map[string][]rpc.Instance
}

func (r *churnResolver) set(service string, urls ...string) {
	insts := make([]rpc.Instance, len(urls))
	for i, u := range urls {
		insts[i] = rpc.Instance{ID: u, BaseURL: u}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.insts[service] = insts
}

func (r *churnResolver) Resolve(_ context.Context, service string) ([]rpc.Instance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.insts[service], nil
}

// holdGreeter holds each Greet until release is closed, after sending on
// arrived (which needs room: the test reads only the first call's).
type holdGreeter struct {
	greeterv1connect.UnimplementedGreeterServiceHandler
	arrived chan struct{}
	release chan struct{}
}

func (g *holdGreeter) Greet(ctx context.Context, req *greeterv1.GreetRequest) (*greeterv1.GreetResponse, error) {
	g.arrived <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &greeterv1.GreetResponse{Greeting: "Hello, " + req.GetName() + "!"}, nil
}

// TestConnForgetsDepartedInstances replaces a service's only instance five
// times and checks that the Conn keeps state (an endpoint and a breaker)
// only for instances that some service's last answer names, and that a call
// in flight to an instance that left still completes.
func TestConnForgetsDepartedInstances(t *testing.T) {
	r := &churnResolver{insts: map[string][]rpc.Instance{}}
	conn := rpc.NewResolvingConn(r)
	defer conn.Close()
	client := breakerClient(conn)
	tracked := func(wantEndpoints, wantBreakers int) {
		t.Helper()
		if e, b := conn.Tracked(); e != wantEndpoints || b != wantBreakers {
			t.Fatalf("conn tracks %d instances and %d breakers, want %d and %d", e, b, wantEndpoints, wantBreakers)
		}
	}
	greet := func() {
		t.Helper()
		if _, err := client.Greet(t.Context(), &greeterv1.GreetRequest{Name: "x"}); err != nil {
			t.Fatal(err)
		}
	}

	// A call is in flight to the first instance when it leaves.
	hold := &holdGreeter{arrived: make(chan struct{}, 1), release: make(chan struct{})}
	srv := quietServer()
	greeterv1concord.RegisterGreeterService(srv, hold)
	first := startServer(t, srv, nil)
	r.set("greeter", first.url)
	held := make(chan error, 1)
	go func() {
		_, err := client.Greet(t.Context(), &greeterv1.GreetRequest{Name: "held"})
		held <- err
	}()
	select {
	case <-hold.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("held call did not arrive within 10s")
	}
	for i := 0; i < 5; i++ {
		next := startServer(t, quietServer(), &testGreeter{})
		r.set("greeter", next.url)
		greet()
		tracked(1, 1)
	}
	close(hold.release)
	select {
	case err := <-held:
		if err != nil {
			t.Fatalf("call in flight to a departed instance: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("held call did not end within 10s")
	}
	// The departed instance comes back: fresh state, nothing in flight.
	r.set("greeter", first.url)
	greet()
	if n, ok := conn.InFlight(first.url); !ok || n != 0 {
		t.Fatalf("returning instance: tracked %v with %d in flight, want tracked with 0", ok, n)
	}
	tracked(1, 1)

	// An instance that two services share stays while either names it.
	shared := startServer(t, quietServer(), &testGreeter{})
	other := greeterv1concord.GreeterServicePolicy()
	other.DiscoveryName = "greeter-canary"
	otherClient := greeterv1connect.NewGreeterServiceClient(conn.Client(other))
	r.set("greeter", shared.url)
	r.set("greeter-canary", shared.url)
	greet()
	if _, err := otherClient.Greet(t.Context(), &greeterv1.GreetRequest{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	tracked(1, 1)
	elsewhere := startServer(t, quietServer(), &testGreeter{})
	r.set("greeter", elsewhere.url)
	greet()
	if _, ok := conn.InFlight(shared.url); !ok {
		t.Fatal("the instance that greeter-canary still names was dropped")
	}
	tracked(2, 2) // with its breaker
}
