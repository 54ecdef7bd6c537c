package rpc_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/rpc"
)

// TestClientMetrics: the hook sees each call once, with the upstream's
// discovery name, its code, its duration and its retries: a call that
// succeeds, one that fails after two retries, and a server stream.
func TestClientMetrics(t *testing.T) {
	g := &testGreeter{}
	ts := startServer(t, quietServer(), g)
	var mu sync.Mutex
	var got []rpc.ClientCallReport
	conn := rpc.NewConn(ts.url, rpc.WithClientMetrics(func(_ context.Context, r rpc.ClientCallReport) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r)
	}))
	defer conn.Close()
	client := greetClient(conn, func(m *rpc.MethodPolicy) { m.Retry = fastRetry(3) })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := client.Greet(ctx, &greeterv1.GreetRequest{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	g.failing.Store(true)
	if _, err := client.Greet(ctx, &greeterv1.GreetRequest{Name: "x"}); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("failing Greet: %v", err)
	}
	g.failing.Store(false)
	stream, err := client.GreetMany(ctx, &greeterv1.GreetManyRequest{Names: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	_ = stream.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("reports %+v, want 3", got)
	}
	for i, want := range []rpc.ClientCallReport{
		// Sizes are the protobuf encodings of the last messages each way.
		{Service: "greeter", Procedure: "/greeter.v1.GreeterService/Greet", Protocol: "connect", SentBytes: 3, ReceivedBytes: 11},
		{Service: "greeter", Procedure: "/greeter.v1.GreeterService/Greet", Protocol: "connect", Code: connect.CodeUnavailable, Retries: 2, SentBytes: 3},
		{Service: "greeter", Procedure: "/greeter.v1.GreeterService/GreetMany", Protocol: "connect", SentBytes: 6, ReceivedBytes: 11},
	} {
		r := got[i]
		if r.Duration <= 0 {
			t.Errorf("report %d: duration %v", i, r.Duration)
		}
		r.Duration = 0
		if r != want {
			t.Errorf("report %d: %+v, want %+v", i, r, want)
		}
	}
}
