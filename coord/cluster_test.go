package coord_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
)

// childEnv makes the test binary run one cluster node (runChildNode)
// instead of the tests, so that a test can kill -9 a real node process.
const childEnv = "CONCORD_COORD_TEST_NODE"

// runChildNode opens a cluster node from the environment, prints
// "READY <client URL>" and serves until SIGTERM or SIGKILL.
func runChildNode() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	n, err := coord.Open(ctx,
		coord.WithName(os.Getenv("NODE_NAME")),
		coord.WithDataDir(os.Getenv("NODE_DIR")),
		coord.WithLogger(logger),
		coord.WithCluster(coord.Cluster{
			Listen:   os.Getenv("NODE_ROUTE"),
			Peers:    strings.Split(os.Getenv("NODE_PEERS"), ","),
			Username: "route",
			Password: os.Getenv("NODE_ROUTE_PASSWORD"),
		}),
	)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child node:", err)
		os.Exit(1)
	}
	fmt.Printf("READY %s\n", n.ClientURL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	n.Close()
	os.Exit(0)
}

// routePassword authenticates the test cluster's routes.
const routePassword = "r0ute-s3cret"

// childNode is a cluster node in a child process.
type childNode struct {
	name, dir, route string
	cmd              *exec.Cmd
	url              string
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (c *childNode) start(t *testing.T, peers []string) <-chan error {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "NODE_NAME="+c.name, "NODE_DIR="+c.dir,
		"NODE_ROUTE="+c.route, "NODE_PEERS="+strings.Join(peers, ","), "NODE_ROUTE_PASSWORD="+routePassword)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.cmd = cmd
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			ready <- fmt.Errorf("%s exited before it was ready: %w", c.name, err)
			return
		}
		c.url = strings.TrimSpace(strings.TrimPrefix(line, "READY "))
		ready <- nil
		_, _ = io.Copy(io.Discard, out)
	}()
	return ready
}

func (c *childNode) kill9() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Kill() // SIGKILL: no graceful shutdown
		_ = c.cmd.Wait()
		c.cmd = nil
	}
}

func waitAll(t *testing.T, chans ...<-chan error) {
	t.Helper()
	for _, ch := range chans {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(90 * time.Second):
			t.Fatal("node not ready within 90s")
		}
	}
}

// TestClusterSurvivesKill9 forms a 3-node cluster of child processes on
// loopback, with password-protected routes, writes through it, kills -9 each node in turn while writing,
// restarts it, and checks that writes resume within a bound and that every
// acknowledged write is still there, with R3 buckets throughout.
func TestClusterSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three node processes")
	}
	base := t.TempDir()
	nodes := make([]*childNode, 3)
	var routes []string
	for i := range nodes {
		nodes[i] = &childNode{name: fmt.Sprintf("n%d", i+1), dir: fmt.Sprintf("%s/n%d", base, i+1), route: freePort(t)}
		routes = append(routes, nodes[i].route)
	}
	defer func() {
		for _, n := range nodes {
			n.kill9()
		}
	}()
	var readies []<-chan error
	for _, n := range nodes {
		readies = append(readies, n.start(t, routes))
	}
	waitAll(t, readies...)

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url)
	}
	client, err := coord.Open(ctx, coord.WithClient(urls, coord.ClientAuth{}), coord.WithName("tester"), quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	st, err := client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range st.Buckets {
		if b.Replicas != 3 {
			t.Fatalf("%s has %d replicas, want 3", b.Name, b.Replicas)
		}
	}
	kv, err := client.JetStream().KeyValue(ctx, coord.BucketConfig)
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]string{}
	put := func(key, val string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for attempt := 0; ; attempt++ {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := kv.Put(pctx, key, []byte(val))
			pcancel()
			if err == nil {
				acked[key] = val
				return
			}
			if time.Now().After(deadline) || attempt > 1000 {
				t.Fatalf("put %s: writes did not resume within %v: %v", key, within, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for i := 0; i < 20; i++ {
		put(fmt.Sprintf("before.%d", i), "v", 10*time.Second)
	}
	for round, victim := range nodes {
		victim.kill9()
		// Raft leader elections in nats-server take a few seconds.
		for i := 0; i < 10; i++ {
			put(fmt.Sprintf("during.%d.%d", round, i), victim.name, 30*time.Second)
		}
		waitAll(t, victim.start(t, routes))
		for i := 0; i < 5; i++ {
			put(fmt.Sprintf("after.%d.%d", round, i), "v", 30*time.Second)
		}
	}
	// Every acknowledged write survived three kill -9s and restarts (the
	// last victim restarted, so each node has crashed once and caught up).
	for key, want := range acked {
		e, err := kv.Get(ctx, key)
		if err != nil {
			t.Fatalf("acknowledged key %s lost: %v", key, err)
		}
		if string(e.Value()) != want {
			t.Fatalf("key %s = %q, want %q", key, e.Value(), want)
		}
	}
	if len(acked) != 20+3*15 {
		t.Fatalf("%d acknowledged writes, want %d", len(acked), 20+3*15)
	}
}
