package main

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net/http"
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
//
// The App's HTTP client counts, per greeter address, the Greet requests
// each greeter answered, so that the kill is known to matter: both
// greeters served calls before it (else the killed one may never have
// been in rotation, and zero failures would prove nothing), and the
// survivor served calls after it. This fails if the App balances every
// call to one instance, if it never sees the second greeter register, or
// if it does not retry an attempt that met the dead instance.
func TestWelcomeAppCallsGreetersByName(t *testing.T) {
	if testing.Short() {
		t.Skip("runs greeter processes")
	}
	bin := buildGreeter(t)
	node := listeningNode(t)

	greets := newGreetCounter()
	defer greets.client.CloseIdleConnections()
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr(""), concord.WithDataDir(t.TempDir()),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0),
		concord.WithCoordOptions(coord.WithClient([]string{node.ClientURL()}, nodetest.ClientAuth())),
		concord.WithClientOptions(rpc.WithHTTPClient(greets)))
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
	victim, survivor := procs[0].addr, procs[1].addr

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
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
			wg.Wait()
		}
	}
	defer stopLoad()
	// Both greeters are in rotation before the kill: each has served
	// calls (the second may register a little after the first).
	const enough = 10
	if !greets.await(20*time.Second, func(served, _ map[string]int) bool {
		return served[victim] >= enough && served[survivor] >= enough
	}) {
		served, _ := greets.snapshot()
		t.Fatalf("before the kill, greeters served %v; want %d each from %s (killed) and %s", served, enough, victim, survivor)
	}
	before, failedBefore := greets.snapshot()
	_ = procs[0].stop(syscall.SIGKILL)
	// Load goes on for 2 s, well within the killed greeter's TTL
	// (registry.DefaultTTL, 5 s): the registry still lists it, so the
	// App's client meets it and must retry on the survivor.
	time.Sleep(2 * time.Second)
	if !greets.await(10*time.Second, func(served, _ map[string]int) bool { return served[survivor] >= before[survivor]+enough }) {
		served, _ := greets.snapshot()
		t.Fatalf("after the kill, the survivor %s served %d calls, want %d", survivor, served[survivor]-before[survivor], enough)
	}
	stopLoad()
	after, failedAfter := greets.snapshot()
	t.Logf("%d Welcome calls, %d failed; Greet answers before the kill %v, after %v; failed attempts before %v, after %v",
		calls.Load(), failures.Load(), before, after, failedBefore, failedAfter)
	if failures.Load() != 0 || calls.Load() < 20 {
		t.Fatalf("%d of %d calls failed", failures.Load(), calls.Load())
	}
	// Whether an attempt met the dead instance depends on timing: under
	// load the App sometimes stops choosing it before any attempt fails at
	// the HTTP client (seen 2 in about 20 runs), so this is reported, not
	// asserted. Both greeters were in rotation (asserted above), so zero
	// failed calls across the kill is the invariant.
	t.Logf("failed attempts on the killed greeter after the kill: %d", failedAfter[victim]-failedBefore[victim])
}

// greetCounter is the Welcome App's HTTP client, wrapped to count, per
// greeter address (host:port, as in the greeter's "addr=" log line and its
// registered base URL), the requests that greeter answered with 200 (a
// Connect unary call that succeeded) and the attempts that failed (no
// answer, or an error status). It replaces the Conn's default HTTP
// clients (rpc.WithHTTPClient) with one pooled transport speaking h2c
// (HTTP/2 with prior knowledge), which every greeter serves: the test is
// of discovery, balancing and retries above it, not of the HTTP version
// the default clients pick.
type greetCounter struct {
	client *http.Client
	mu     sync.Mutex
	served map[string]int
	failed map[string]int
}

func newGreetCounter() *greetCounter {
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	return &greetCounter{
		client: &http.Client{Transport: &http.Transport{
			Protocols: protocols, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true,
		}},
		served: map[string]int{}, failed: map[string]int{},
	}
}

// Do implements connecthttp.HTTPClient. An answer whose body then fails
// to read (the greeter died after sending its headers) counts as failed
// too, which is how a call in flight at a kill -9 often ends.
func (c *greetCounter) Do(req *http.Request) (*http.Response, error) {
	res, err := c.client.Do(req)
	c.mu.Lock()
	if err == nil && res.StatusCode == http.StatusOK {
		c.served[req.URL.Host]++
	} else {
		c.failed[req.URL.Host]++
	}
	c.mu.Unlock()
	if err == nil {
		res.Body = &countedBody{ReadCloser: res.Body, c: c, host: req.URL.Host}
	}
	return res, err
}

// countedBody counts a failed read of an answer's body against its host.
type countedBody struct {
	io.ReadCloser
	c      *greetCounter
	host   string
	failed bool
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && !b.failed {
		b.failed = true
		b.c.mu.Lock()
		b.c.failed[b.host]++
		b.c.mu.Unlock()
	}
	return n, err
}

// snapshot returns copies of the counts.
func (c *greetCounter) snapshot() (served, failed map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.served), maps.Clone(c.failed)
}

// await polls the counts until cond holds or d passes, and reports whether
// it held.
func (c *greetCounter) await(d time.Duration, cond func(served, failed map[string]int) bool) bool {
	deadline := time.Now().Add(d)
	for i := 0; i < 100000; i++ {
		if cond(c.snapshot()) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}
