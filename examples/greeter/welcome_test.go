package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/rpc"
)

// TestWelcomeAppCallsGreetersByName runs a Welcome App (in this process,
// client mode) whose GreeterService client is made before any greeter
// exists, and whose first call is made then too: the call waits and
// succeeds once greeters register. Two greeter processes then serve a
// steady load of Welcome calls, each reaching a greeter by its discovery
// name through the App; one greeter is killed with -9 and no call fails
// (Greet is idempotent: the App's client retries it on the other).
func TestWelcomeAppCallsGreetersByName(t *testing.T) {
	if testing.Short() {
		t.Skip("runs greeter processes")
	}
	bin := buildGreeter(t)
	node := listeningNode(t)

	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr(""), concord.WithDataDir(t.TempDir()),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0),
		concord.WithCoordOptions(coord.WithClient([]string{node.ClientURL()}, nodetest.ClientAuth())))
	greeterv1concord.RegisterWelcomeService(app, greeter.Welcome{Greeter: greeterv1concord.NewGreeterServiceClient(app)})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- app.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	addr, err := app.Server().Addr(actx)
	acancel()
	if err != nil {
		t.Fatal(err)
	}
	conn := rpc.NewConn("http://" + addr.String())
	defer conn.Close()
	welcome := greeterv1concord.NewWelcomeServiceClient(conn)
	call := func(ctx context.Context, name string) error {
		res, err := welcome.Welcome(ctx, &greeterv1.WelcomeRequest{Name: name})
		if err == nil && res.GetWelcome() != "Hello, "+name+"! Welcome to Concord." {
			t.Errorf("welcome %q", res.GetWelcome())
		}
		return err
	}

	// A call made before any greeter exists waits for one (its deadline
	// is the method's 3 s timeout).
	early := make(chan error, 1)
	go func() { early <- call(context.Background(), "early") }()
	time.Sleep(100 * time.Millisecond)
	procs := make([]*greeterProc, 2)
	for i := range procs {
		procs[i] = &greeterProc{bin: bin, natsURL: node.ClientURL(), dir: filepath.Join(t.TempDir(), "data"), name: "g" + string(rune('1'+i))}
		procs[i].start(t)
		t.Cleanup(func() { _ = procs[i].stop(syscall.SIGKILL) })
	}
	if err := <-early; err != nil {
		t.Fatalf("call made before any greeter existed: %v", err)
	}

	// Steady load; kill -9 one greeter in the middle.
	var calls, failures atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := call(cctx, "load")
				ccancel()
				calls.Add(1)
				if err != nil {
					failures.Add(1)
					t.Logf("worker %d: %v", w, err)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	_ = procs[0].stop(syscall.SIGKILL)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d Welcome calls, %d failed", calls.Load(), failures.Load())
	if failures.Load() != 0 || calls.Load() < 20 {
		t.Fatalf("%d of %d calls failed", failures.Load(), calls.Load())
	}
}
