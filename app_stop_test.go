package concord_test

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"math/rand/v2"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/concordrpc/concord"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/rpc"
)

var stopStress = flag.Int("stopstress", 1, "multiplies the start-stop cycles of TestStopAtAnyMomentOfStart (make stress: 10)")

// stopBound is how long a stop may take, at any moment of start: the RPC
// drain (at most rpc.DefaultDrainTimeout; a connection a client opened but
// has not used yet holds http.Server.Shutdown for up to 5 s), Open's
// attempt in flight (0.5 s), deregistration (2 s) and the wait for
// nats-server's goroutines (2 s) are each bounded. A stop normally takes
// milliseconds; this catches one that hangs.
const stopBound = rpc.DefaultDrainTimeout + 10*time.Second

// TestStopAtAnyMomentOfStart starts an App and stops it at a random moment
// of its first 100 ms (half of the stops in the first 10 ms, where the
// embedded node is still starting), with a call in flight: before, during
// and after JetStream start-up, bucket creation and registration. A stop
// that crashed the process inside nats-server (issue 19: a JetStream API
// worker that first ran after Shutdown began) fails the whole test binary;
// goleak in TestMain catches what a stop left running.
func TestStopAtAnyMomentOfStart(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	drainTimeouts := 0
	for i := range 100 * *stopStress {
		app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithDataDir(t.TempDir()),
			concord.WithLogger(slog.New(slog.DiscardHandler)))
		greeterv1concord.RegisterGreeterService(app, greeter.Service{})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- app.Run(ctx) }()
		// A discovery call and a lock, both waiting on coordination.
		calls := make(chan struct{}, 2)
		go func() {
			defer func() { calls <- struct{}{} }()
			client := greeterv1concord.NewGreeterServiceClient(app)
			_, _ = client.Greet(ctx, &greeterv1.GreetRequest{Name: "stop"})
		}()
		go func() {
			defer func() { calls <- struct{}{} }()
			m := app.Mutex("stop")
			if _, err := m.Lock(ctx); err == nil {
				uctx, ucancel := context.WithTimeout(context.Background(), time.Second)
				_ = m.Unlock(uctx)
				ucancel()
			}
		}()
		window := 100 * time.Millisecond
		if i%2 == 0 {
			window = 10 * time.Millisecond
		}
		time.Sleep(rand.N(window))
		start := time.Now()
		cancel()
		// A stop that takes seconds is bounded but not normal: keep a
		// goroutine dump from then, to show what it waited for if it
		// then fails.
		var slow strings.Builder
		var err error
		select {
		case err = <-done:
		case <-time.After(5 * time.Second):
			_ = pprof.Lookup("goroutine").WriteTo(&slow, 2)
			select {
			case err = <-done:
			case <-time.After(stopBound):
				t.Fatalf("cycle %d: Run did not return within %v of the stop; goroutines 5s after it:\n%s", i, stopBound, slow.String())
			}
		}
		// Under a fully loaded machine (make test), about one stop in a few
		// hundred waited for the whole RPC drain (rpc.ErrDrainTimeout,
		// 15 s) with a connection still active; the cause is not found yet
		// (README, Known issues). It is bounded, so it is logged with the
		// goroutines at 5 s; any other error fails.
		if errors.Is(err, rpc.ErrDrainTimeout) {
			drainTimeouts++
			t.Logf("cycle %d: Run: %v (after %v); goroutines 5s after the stop:\n%s", i, err, time.Since(start), slow.String())
			if drainTimeouts > 2 {
				t.Fatalf("%d stops waited for the drain timeout", drainTimeouts)
			}
		} else if err != nil {
			t.Fatalf("cycle %d: Run: %v (after %v); goroutines 5s after the stop, if it took that long:\n%s", i, err, time.Since(start), slow.String())
		}
		if d := time.Since(start); d > stopBound {
			t.Fatalf("cycle %d: stop took %v", i, d)
		}
		for range 2 {
			select {
			case <-calls:
			case <-time.After(stopBound):
				t.Fatalf("cycle %d: a call did not end after the stop", i)
			}
		}
	}
}
