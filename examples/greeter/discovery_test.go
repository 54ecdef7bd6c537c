package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/registry"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/rpc"
)

// greeterProc is a greeter instance in a child process, in client mode
// against a shared coordination node.
type greeterProc struct {
	bin, natsURL, dir, name string
	cmd                     *exec.Cmd
	addr                    string
}

var addrRE = regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`)

func (g *greeterProc) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(g.bin, "-addr", "127.0.0.1:0", "-data", g.dir, "-name", g.name, "-nats", g.natsURL)
	cmd.Env = append(os.Environ(), "CONCORD_NATS_USER="+nodetest.User, "CONCORD_NATS_PASSWORD="+nodetest.Password)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g.cmd = cmd
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			if m := addrRE.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
	}()
	select {
	case g.addr = <-found:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not start", g.name)
	}
}

func (g *greeterProc) stop(sig syscall.Signal) error {
	if g.cmd == nil {
		return nil
	}
	_ = g.cmd.Process.Signal(sig)
	err := g.cmd.Wait()
	g.cmd = nil
	return err
}

// discoveryFixture runs a coordination node, three greeter processes
// registered in it, and a client that resolves them through the registry.
type discoveryFixture struct {
	procs    []*greeterProc
	resolver *registry.Resolver
	client   func(ctx context.Context) error
	// once calls without retries, as a non-idempotent call must be made:
	// any failure of the one attempt is the caller's.
	once func(ctx context.Context) error
}

// buildGreeter builds the greeter binary and returns its path.
func buildGreeter(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "greeter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// listeningNode opens a coordination node that greeter processes reach as
// NATS clients, closed at cleanup.
func listeningNode(t *testing.T) *coord.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	node, err := coord.Open(ctx, coord.WithDataDir(t.TempDir()), coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth(), nodetest.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	return node
}

func newDiscoveryFixture(t *testing.T) *discoveryFixture {
	t.Helper()
	bin := buildGreeter(t)
	node := listeningNode(t)
	quiet := nodetest.Quiet()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	client, err := coord.Open(ctx, coord.WithClient([]string{node.ClientURL()}, nodetest.ClientAuth()), coord.WithName("tester"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	f := &discoveryFixture{resolver: registry.NewResolver(client)}
	t.Cleanup(func() { f.resolver.Close() })
	for i := 0; i < 3; i++ {
		p := &greeterProc{bin: bin, natsURL: node.ClientURL(), dir: filepath.Join(t.TempDir(), "data"), name: fmt.Sprintf("g%d", i+1)}
		p.start(t)
		f.procs = append(f.procs, p)
		t.Cleanup(func() { _ = p.stop(syscall.SIGKILL) })
	}
	f.waitInstances(t, 3, 20*time.Second)
	conn := rpc.NewResolvingConn(f.resolver)
	t.Cleanup(func() { conn.Close() })
	greeter := greeterv1concord.NewGreeterServiceClient(conn)
	f.client = func(ctx context.Context) error {
		_, err := greeter.Greet(ctx, &greeterv1.GreetRequest{Name: "load"})
		return err
	}
	onceConn := rpc.NewResolvingConn(f.resolver, rpc.WithRetryBudget(0, 0))
	t.Cleanup(func() { onceConn.Close() })
	onceGreeter := greeterv1concord.NewGreeterServiceClient(onceConn)
	f.once = func(ctx context.Context) error {
		_, err := onceGreeter.Greet(ctx, &greeterv1.GreetRequest{Name: "once"})
		return err
	}
	return f
}

// waitInstances waits until the resolver sees n greeter instances and
// returns how long that took.
func (f *discoveryFixture) waitInstances(t *testing.T, n int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for i := 0; time.Since(start) < within && i < 100000; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		insts, _ := f.resolver.Resolve(ctx, greeterv1concord.GreeterServiceDiscoveryName)
		cancel()
		if len(insts) == n {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the registry did not show %d greeter instances within %v", n, within)
	return 0
}

// load calls Greet continuously from a few goroutines until stop is
// closed, with retries (and, if once is set, half of them without), and
// reports calls and failures.
func (f *discoveryFixture) load(stop <-chan struct{}, once bool) (calls, failures *atomic.Int64, wait func()) {
	calls, failures = new(atomic.Int64), new(atomic.Int64)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		call := f.client
		if once && w%2 == 1 {
			call = f.once
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := call(ctx)
				cancel()
				calls.Add(1)
				if err != nil {
					failures.Add(1)
					fmt.Fprintln(os.Stderr, "load call failed:", err)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return calls, failures, wg.Wait
}

// TestKill9DropsInstance kills one of three instances with kill -9: the
// client's view drops it within TTL + 1 s, and idempotent calls made
// meanwhile succeed (the retry goes to another instance).
func TestKill9DropsInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("runs greeter processes")
	}
	f := newDiscoveryFixture(t)
	stop := make(chan struct{})
	// A kill -9 fails a call in flight to the victim: only idempotent
	// calls, which the client retries elsewhere, can all succeed.
	calls, failures, wait := f.load(stop, false)
	time.Sleep(300 * time.Millisecond)
	_ = f.procs[0].stop(syscall.SIGKILL)
	took := f.waitInstances(t, 2, registry.DefaultTTL+5*time.Second)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wait()
	t.Logf("view dropped the killed instance after %v; %d calls, %d failed", took, calls.Load(), failures.Load())
	if took > registry.DefaultTTL+time.Second {
		t.Errorf("view dropped the killed instance after %v, want within TTL + 1s (%v)", took, registry.DefaultTTL+time.Second)
	}
	if failures.Load() != 0 || calls.Load() < 10 {
		t.Fatalf("%d of %d calls failed around the kill", failures.Load(), calls.Load())
	}
}

// TestRollingRestart restarts the three instances one by one with SIGTERM
// (deregister, then drain) under continuous load: no call fails, not even
// one made without retries as a non-idempotent call must be.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs greeter processes")
	}
	f := newDiscoveryFixture(t)
	stop := make(chan struct{})
	calls, failures, wait := f.load(stop, true)
	for _, p := range f.procs {
		time.Sleep(200 * time.Millisecond)
		if err := p.stop(syscall.SIGTERM); err != nil {
			t.Fatalf("%s exited with %v on SIGTERM", p.name, err)
		}
		f.waitInstances(t, 2, 10*time.Second)
		p.start(t)
		f.waitInstances(t, 3, 20*time.Second)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wait()
	t.Logf("%d calls during the rolling restart, %d failed", calls.Load(), failures.Load())
	if failures.Load() != 0 || calls.Load() < 20 {
		t.Fatalf("%d of %d calls failed during the rolling restart", failures.Load(), calls.Load())
	}
}
