package coord_test

import (
	"context"
	"flag"
	"math/rand/v2"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/internal/clustertest"
)

var stopStress = flag.Int("stopstress", 1, "multiplies the start-stop cycles of the TestStop...AtAnyMomentOfStart tests (make stress: 10)")

// stopBound is how long a stop may take, at any moment of start: Open's
// attempt in flight (0.5 s), the wait for nats-server's goroutines to start
// (2 s) and nats-server's own shutdown (which waits up to 10 s for a
// cluster node's monitor) are bounded; a stop normally takes milliseconds.
const stopBound = 20 * time.Second

// cycleStop opens a node with opts, writes to it from another goroutine
// once it is open, and stops it after a random delay within window: Open's
// context ends, then Close runs if Open succeeded. It fails the test if
// the stop takes longer than stopBound. A stop that crashes nats-server
// (issue 19) takes the test binary down; goleak in TestMain catches what
// a stop left running.
func cycleStop(t *testing.T, cycle int, window time.Duration, opts ...coord.Option) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type result struct {
		n   *coord.Node
		err error
	}
	opened := make(chan result, 1)
	writing := make(chan struct{})
	go func() {
		n, err := coord.Open(ctx, append(opts, quiet())...)
		opened <- result{n, err}
		if err != nil {
			close(writing)
			return
		}
		// Writes in flight when the stop comes.
		go func() {
			defer close(writing)
			kv, err := n.JetStream().KeyValue(ctx, coord.BucketConfig)
			if err != nil {
				return
			}
			for i := 0; ctx.Err() == nil && i < 1000; i++ {
				_, _ = kv.Put(ctx, "k", []byte("v"))
			}
		}()
	}()
	time.Sleep(rand.N(window))
	start := time.Now()
	cancel()
	var r result
	select {
	case r = <-opened:
	case <-time.After(stopBound):
		var dump strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&dump, 2)
		t.Fatalf("cycle %d: Open did not return within %v of its context's end; goroutines:\n%s", cycle, stopBound, dump.String())
	}
	<-writing
	if r.n != nil {
		if err := r.n.Close(); err != nil {
			t.Fatalf("cycle %d: Close: %v", cycle, err)
		}
	}
	if d := time.Since(start); d > stopBound {
		t.Fatalf("cycle %d: the stop took %v", cycle, d)
	}
}

// TestStopEmbeddedAtAnyMomentOfStart stops an embedded node hundreds of
// times at random moments of its first 100 ms (half of them in the first
// 20 ms: server start-up), under -race in make test. On nats-server
// v2.15.2 without Close's wait for the server's goroutines, a stop right
// after Server.Start panics in a JetStream API worker.
func TestStopEmbeddedAtAnyMomentOfStart(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	dir := t.TempDir()
	for i := range 200 * *stopStress {
		window := 100 * time.Millisecond
		if i%2 == 0 {
			window = 20 * time.Millisecond
		}
		// The same directory each time: a stop must also release it.
		cycleStop(t, i, window, coord.WithDataDir(dir))
	}
}

// TestStopClusterNodeAtAnyMomentOfStart does the same to the third node of
// a three-node cluster whose other two nodes run in child processes: the
// stop comes while it joins, catches up, and takes part in R3 creates.
func TestStopClusterNodeAtAnyMomentOfStart(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	cluster := clustertest.New(t, 3)
	readies := cluster.Launch(t, cluster.Nodes[0], cluster.Nodes[1])
	opts := append(cluster.InProcess(cluster.Nodes[2]), quiet())
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	third, err := coord.Open(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	clustertest.Wait(t, 90*time.Second, readies...)
	if err := third.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 30 * *stopStress {
		cycleStop(t, i, 100*time.Millisecond, opts...)
	}
}
