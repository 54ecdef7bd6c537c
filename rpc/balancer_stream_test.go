package rpc_test

import (
	"context"
	"testing"
	"time"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/rpc"
)

// waitInFlight waits up to 5s for conn to count want calls in flight to
// baseURL. The count settles on a goroutine of its own once a call's context
// ends, so there is nothing to wait on but the count.
func waitInFlight(t *testing.T, conn *rpc.Conn, baseURL string, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var n int64
	for i := 0; i < 5000 && time.Now().Before(deadline); i++ {
		if n, _ = conn.InFlight(baseURL); n == want {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d calls in flight to %s after 5s, want %d", n, baseURL, want)
}

// TestAbandonedStreamSettlesInFlight abandons server streams by cancelling
// their context after the first message, and checks that the balancer stops
// counting them in flight, once: a later Receive and Close change nothing.
func TestAbandonedStreamSettlesInFlight(t *testing.T) {
	ts := startServer(t, quietServer(), &testGreeter{})
	for _, tc := range []struct {
		name       string
		closeAfter bool // the caller reads and closes after cancelling
	}{{"never closed", false}, {"closed after cancel", true}} {
		t.Run(tc.name, func(t *testing.T) {
			conn := rpc.NewResolvingConn(rpc.NewStaticResolver(map[string][]string{"greeter": {ts.url}}))
			defer conn.Close()
			client := greeterv1concord.NewGreeterServiceClient(conn)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			stream, err := client.GreetMany(ctx, &greeterv1.GreetManyRequest{Names: []string{"a", "b", "c"}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Receive(); err != nil {
				t.Fatal(err)
			}
			if n, _ := conn.InFlight(ts.url); n != 1 {
				t.Fatalf("%d calls in flight during the stream, want 1", n)
			}
			cancel()
			waitInFlight(t, conn, ts.url, 0)
			if tc.closeAfter {
				if _, err := stream.Receive(); err == nil {
					t.Fatal("Receive after cancel succeeded")
				}
				_ = stream.Close()
				if n, _ := conn.InFlight(ts.url); n != 0 {
					t.Fatalf("%d calls in flight after Receive and Close, want 0 (settled twice?)", n)
				}
			}
		})
	}
}
