package concord_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/coord/registry"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/internal/clustertest"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/rpc"
)

// startApp runs app until the test ends and returns its base URL and a
// function that stops it and returns Run's result.
func startApp(t *testing.T, app *concord.App) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	defer acancel()
	addr, err := app.Server().Addr(actx)
	if err != nil {
		cancel()
		t.Fatalf("app did not listen: %v (Run: %v)", err, <-done)
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return within 30s")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return "http://" + addr.String(), stop
}

// clientApp is a greeter App in client mode against the NATS server at
// url, with no drain delay.
func clientApp(t *testing.T, url string) *concord.App {
	t.Helper()
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr(""), concord.WithDataDir(t.TempDir()),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0),
		concord.WithCoordOptions(coord.WithClient([]string{url}, nodetest.ClientAuth())))
	greeterv1concord.RegisterGreeterService(app, greeter.Service{})
	return app
}

// readyz returns the App's /readyz status code and body.
func readyz(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// waitReadyz waits, at most d, until /readyz answers want, and returns the
// last body.
func waitReadyz(t *testing.T, url string, want int, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	var code int
	var body string
	for i := 0; i < 10000 && time.Now().Before(deadline); i++ {
		if code, body = readyz(t, url); code == want {
			return body
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("/readyz answered %d %q for %v, want %d", code, body, d, want)
	return ""
}

// freeAddr returns a loopback address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// listeningNode opens an embedded node that NATS clients reach at addr
// (with nodetest's credentials), in dir.
func listeningNode(t *testing.T, dir, addr string) *coord.Node {
	t.Helper()
	node, err := coord.Open(nodetest.Within(t, 20*time.Second), coord.WithDataDir(dir), nodetest.Quiet(),
		coord.WithListen(addr), nodetest.ListenAuth())
	if err != nil {
		t.Fatal(err)
	}
	return node
}

// TestAppLocksFreeAtGracefulStop: the locks and leaderships an App holds
// are free as soon as its Run returns, not a TTL later.
func TestAppLocksFreeAtGracefulStop(t *testing.T) {
	node := listeningNode(t, t.TempDir(), "127.0.0.1:-1")
	defer node.Close()
	app := clientApp(t, node.ClientURL())
	_, stop := startApp(t, app)
	ctx := nodetest.Within(t, 20*time.Second)
	const ttl = 30 * time.Second // far longer than the test waits
	mu := app.Mutex("jobs/nightly", lock.WithTTL(ttl))
	if _, err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	e := app.Election("scheduler", lock.WithTTL(ttl))
	if _, err := e.Campaign(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	// Another process takes both at once.
	other := lock.FromNode(node)
	if _, err := lock.NewMutex(other, "jobs/nightly").TryLock(ctx); err != nil {
		t.Fatalf("lock after the App stopped: %v", err)
	}
	if _, err := lock.NewElection(other, "scheduler").Campaign(ctx, "other"); err != nil {
		t.Fatalf("campaign after the App stopped: %v", err)
	}
	if d := time.Since(stopped); d > time.Second {
		t.Fatalf("lock and leadership free %v after the stop, want within 1s", d)
	}
	// After Run, Node and Local say why they cannot serve.
	if _, err := app.Node(ctx); !errors.Is(err, concord.ErrNotReady) {
		t.Fatalf("Node after Run: %v, want ErrNotReady", err)
	}
	if _, err := app.Local(ctx); !errors.Is(err, concord.ErrNotReady) {
		t.Fatalf("Local after Run: %v, want ErrNotReady", err)
	}
}

// TestAppServesWhileCoordinationIsDown starts a client-mode App whose NATS
// server is not up: it serves RPCs and says why it is not ready; once the
// server comes up it becomes ready and registers; when the server goes
// away it is not ready again, and ready again when the server is back.
func TestAppServesWhileCoordinationIsDown(t *testing.T) {
	addr := freeAddr(t)
	app := clientApp(t, "nats://"+addr)
	url, stop := startApp(t, app)
	ctx := nodetest.Within(t, 60*time.Second)

	body := waitReadyz(t, url, http.StatusServiceUnavailable, 5*time.Second)
	if !strings.Contains(body, "coordination") {
		t.Errorf("/readyz while coordination is down: %q, want the reason", body)
	}
	conn := rpc.NewConn(url)
	defer conn.Close()
	if _, err := greeterv1concord.NewGreeterServiceClient(conn).Greet(ctx, &greeterv1.GreetRequest{Name: "down"}); err != nil {
		t.Fatalf("call while coordination is down: %v", err)
	}
	// What needs coordination fails fast, with the reason.
	if _, err := app.Node(ctx); !errors.Is(err, coord.ErrUnavailable) {
		t.Fatalf("Node while coordination is down: %v, want ErrUnavailable", err)
	}
	if _, err := app.Mutex("down").TryLock(ctx); !errors.Is(err, coord.ErrUnavailable) {
		t.Fatalf("TryLock while coordination is down: %v, want ErrUnavailable", err)
	}

	dir := t.TempDir()
	node := listeningNode(t, dir, addr)
	waitReadyz(t, url, http.StatusOK, 20*time.Second)
	insts, err := registry.NewResolver(node).Instances(ctx, greeterv1concord.GreeterServiceDiscoveryName)
	if err != nil || len(insts) != 1 {
		t.Fatalf("registry after coordination came up: %v, %v", insts, err)
	}

	// A lock taken before a short outage, within its lease, survives it.
	held := app.Mutex("across-outage", lock.WithTTL(20*time.Second))
	token, err := held.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// The server goes away and comes back on the same address and data.
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, url, http.StatusServiceUnavailable, 10*time.Second)
	// While the connection reconnects, what needs the node fails fast
	// (the context would allow 60 s) with the reason.
	begin := time.Now()
	if _, err := app.Node(ctx); !errors.Is(err, coord.ErrUnavailable) || !strings.Contains(err.Error(), "reconnecting") {
		t.Fatalf("Node while reconnecting: %v, want ErrUnavailable", err)
	}
	if _, err := app.Mutex("during-outage").TryLock(ctx); !errors.Is(err, coord.ErrUnavailable) {
		t.Fatalf("TryLock while reconnecting: %v, want ErrUnavailable", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("failing while reconnecting took %v", d)
	}
	node = listeningNode(t, dir, addr)
	defer node.Close()
	waitReadyz(t, url, http.StatusOK, 20*time.Second)
	if err := held.Valid(); err != nil || held.Token() != token {
		t.Fatalf("lock held across the outage: %v (token %d, was %d)", err, held.Token(), token)
	}
	if _, err := lock.NewMutex(lock.FromNode(node), "across-outage").TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("another holder's TryLock after the outage: %v, want ErrLocked", err)
	}
	if err := held.Unlock(ctx); err != nil {
		t.Fatalf("unlock after the outage: %v", err)
	}
	if insts, err := registry.NewResolver(node).Instances(ctx, greeterv1concord.GreeterServiceDiscoveryName); err != nil || len(insts) != 1 {
		t.Fatalf("registry after the outage: %v, %v", insts, err)
	}
	m := app.Mutex("after-outage", lock.WithTTL(5*time.Second))
	if _, err := m.Lock(ctx); err != nil {
		t.Fatalf("lock after the outage: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestAppReopensClosedConnection closes the App's connection to its node
// for good (a protocol error: a subject longer than the server's control
// line, as a raw caller-derived key once caused): the App reports not
// ready, opens a new node, registers again and serves locks.
func TestAppReopensClosedConnection(t *testing.T) {
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr(""), concord.WithDataDir(t.TempDir()),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0))
	greeterv1concord.RegisterGreeterService(app, greeter.Service{})
	url, stop := startApp(t, app)
	ctx := nodetest.Within(t, 60*time.Second)
	waitReadyz(t, url, http.StatusOK, 20*time.Second)
	first, err := app.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nc := first.Conn()
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	_ = nc.Publish(strings.Repeat("x", 5000), nil)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection did not close after the protocol error")
	}
	var second *coord.Node
	for i := 0; i < 500; i++ {
		second, err = app.Node(ctx)
		switch {
		case errors.Is(err, coord.ErrUnavailable): // reopening: callers fail fast
		case err != nil:
			t.Fatal(err)
		case second != first:
			i = 500
			continue
		}
		time.Sleep(20 * time.Millisecond)
	}
	if second == first || second.Conn().IsClosed() {
		t.Fatal("the App kept its closed node")
	}
	waitReadyz(t, url, http.StatusOK, 20*time.Second)
	if _, err := app.Mutex("after-reopen").Lock(ctx); err != nil {
		t.Fatalf("lock after the reopen: %v", err)
	}
	insts, err := registry.NewResolver(second).Instances(ctx, greeterv1concord.GreeterServiceDiscoveryName)
	if err != nil || len(insts) == 0 {
		t.Fatalf("registry after the reopen: %v, %v", insts, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestAppWaitingForQuorum: a cluster-mode App whose peers are not up
// serves RPCs, and its readiness says it waits for a quorum (not just
// "starting"); it stops promptly while it waits.
func TestAppWaitingForQuorum(t *testing.T) {
	c := clustertest.New(t, 3)
	n := c.Nodes[0]
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr(""), concord.WithDataDir(n.Dir+"-app"),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0),
		concord.WithCoordOptions(c.InProcess(n)...))
	greeterv1concord.RegisterGreeterService(app, greeter.Service{})
	url, stop := startApp(t, app)
	ctx := nodetest.Within(t, 30*time.Second)
	conn := rpc.NewConn(url)
	defer conn.Close()
	if _, err := greeterv1concord.NewGreeterServiceClient(conn).Greet(ctx, &greeterv1.GreetRequest{Name: "alone"}); err != nil {
		t.Fatalf("call while the cluster forms: %v", err)
	}
	var body string
	for i := 0; i < 500; i++ {
		var code int
		if code, body = readyz(t, url); code == http.StatusServiceUnavailable && strings.Contains(body, "quorum") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(body, "quorum") {
		t.Fatalf("/readyz while peers are missing: %q, want the reason", body)
	}
	begin := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("stop while waiting for a quorum took %v", d)
	}
}

// TestAppAdvertiseBeyondLoopback: an App listening on loopback whose
// coordination reaches beyond this host refuses to register a loopback URL
// (peers elsewhere would dial themselves) and says what to set; with
// WithAdvertiseURL it registers that URL. The coordination URL names this
// machine by its host name, which the node counts as another host (it is
// not a loopback literal) while it resolves to loopback here, so the test
// dials nothing beyond loopback; where the host name resolves elsewhere,
// the test cannot run without leaving loopback and skips.
func TestAppAdvertiseBeyondLoopback(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	ips, err := net.LookupHost(host)
	if err != nil || len(ips) == 0 || slices.ContainsFunc(ips, func(ip string) bool { return !net.ParseIP(ip).IsLoopback() }) {
		t.Skipf("host name %q resolves to %v (%v), not only to loopback", host, ips, err)
	}
	node := listeningNode(t, t.TempDir(), "127.0.0.1:-1")
	defer node.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(node.ClientURL(), "nats://"))
	remote := coord.WithClient([]string{"nats://" + net.JoinHostPort(host, port)}, nodetest.ClientAuth())
	ctx := nodetest.Within(t, 30*time.Second)

	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr(""), concord.WithDataDir(t.TempDir()),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0), concord.WithCoordOptions(remote))
	greeterv1concord.RegisterGreeterService(app, greeter.Service{})
	err = app.Run(ctx)
	if !errors.Is(err, concord.ErrNotReady) || !strings.Contains(err.Error(), "WithAdvertiseURL") {
		t.Fatalf("Run with a loopback address and remote coordination: %v, want a refusal naming WithAdvertiseURL", err)
	}

	const advertised = "http://greeter-1.internal:8080"
	app = concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr(""), concord.WithDataDir(t.TempDir()),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0), concord.WithCoordOptions(remote),
		concord.WithAdvertiseURL(advertised))
	greeterv1concord.RegisterGreeterService(app, greeter.Service{})
	url, stop := startApp(t, app)
	waitReadyz(t, url, http.StatusOK, 20*time.Second)
	insts, err := registry.NewResolver(node).Instances(ctx, greeterv1concord.GreeterServiceDiscoveryName)
	if err != nil || len(insts) != 1 || insts[0].BaseURL != advertised {
		t.Fatalf("registered instances: %+v, %v; want one at %s", insts, err, advertised)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
