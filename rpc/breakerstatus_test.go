package rpc_test

import (
	"context"
	"testing"
	"time"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/rpc"
)

// TestBreakerStatus resolves two instances, one of them stopped: after
// calls that fail on the stopped one, BreakerStatus shows its breaker open
// with its failure streak, and the live one closed.
func TestBreakerStatus(t *testing.T) {
	live := startServer(t, quietServer(), &testGreeter{})
	dead := startServer(t, quietServer(), &testGreeter{})
	deadURL := dead.url
	if err := dead.stop(t); err != nil {
		t.Fatal(err)
	}
	conn := rpc.NewResolvingConn(zonedResolver{{ID: "b-dead", BaseURL: deadURL}, {ID: "a-live", BaseURL: live.url}},
		rpc.WithBalancing(rpc.BalanceRoundRobin), rpc.WithProbation(time.Nanosecond))
	defer conn.Close()
	if got := conn.BreakerStatus(); got != nil {
		t.Fatalf("before any call: %+v", got)
	}
	client := breakerClient(conn)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for range 12 {
		_, _ = client.Greet(ctx, &greeterv1.GreetRequest{Name: "x"})
	}
	got := conn.BreakerStatus()
	want := []rpc.BreakerStatus{
		{Service: "greeter", Instance: "a-live", Address: live.url, State: "closed"},
		{Service: "greeter", Instance: "b-dead", Address: deadURL, State: "open", Failures: 4},
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("BreakerStatus %+v, want %+v", got, want)
	}
	if got := rpc.NewConn(live.url).BreakerStatus(); got != nil {
		t.Fatalf("fixed Conn: %+v, want nil", got)
	}
}
