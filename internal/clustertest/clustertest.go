package clustertest

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
	"github.com/concordrpc/concord/internal/nodetest"
)

// nodeEnv marks a child process that serves one node.
const nodeEnv = "CONCORD_CLUSTERTEST_NODE"

// routePassword authenticates the test cluster's routes.
const routePassword = "clustertest-r0ute"

// MaybeRunNode serves one cluster node and exits if the process is a node
// started by Node.Start; otherwise it returns at once. The node prints
// "READY <client URL>" and serves until SIGTERM or SIGKILL.
func MaybeRunNode() {
	if os.Getenv(nodeEnv) == "" {
		return
	}
	// Route errors while peers are down are expected; a node that cannot
	// start says so on stderr below.
	logger := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	n, err := coord.Open(ctx,
		coord.WithName(os.Getenv("NODE_NAME")),
		coord.WithDataDir(os.Getenv("NODE_DIR")),
		coord.WithLogger(logger),
		coord.WithListen(os.Getenv("NODE_LISTEN")), nodetest.ListenAuth(),
		coord.WithCluster(routes(os.Getenv("NODE_ROUTE"), strings.Split(os.Getenv("NODE_PEERS"), ","))),
	)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "clustertest node:", err)
		os.Exit(1)
	}
	fmt.Printf("READY %s\n", n.ClientURL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	_ = n.Close()
	os.Exit(0)
}

// RouteCredentials returns the user and password the test cluster's
// routes require, for tests of what a peer with or without them can do.
func RouteCredentials() (user, password string) { return "route", routePassword }

// routes is the cluster configuration of the node whose route address is
// listen.
func routes(listen string, peers []string) coord.Cluster {
	return coord.Cluster{Listen: listen, Peers: peers, Username: "route", Password: routePassword}
}

// Node is a cluster node in a child process. Its client and route
// addresses stay the same across restarts, so clients can reconnect even
// after every node restarted.
type Node struct {
	Name, Dir, Route, Listen string
	URL                      string // client URL, set once started
	cmd                      *exec.Cmd
}

// Cluster is a set of nodes that route to each other.
type Cluster struct {
	Nodes  []*Node
	routes []string
}

// New returns a cluster of n nodes with data under t.TempDir(), not yet
// started. Cleanup kills every node.
func New(t *testing.T, n int) *Cluster {
	t.Helper()
	base := t.TempDir()
	c := &Cluster{}
	for i := range n {
		node := &Node{Name: fmt.Sprintf("n%d", i+1), Dir: fmt.Sprintf("%s/n%d", base, i+1), Route: FreeAddr(t), Listen: FreeAddr(t)}
		c.Nodes = append(c.Nodes, node)
		c.routes = append(c.routes, node.Route)
	}
	t.Cleanup(func() {
		for _, node := range c.Nodes {
			node.Kill9()
		}
	})
	return c
}

// Start starts every node and waits until each is ready.
func (c *Cluster) Start(t *testing.T) {
	t.Helper()
	Wait(t, 90*time.Second, c.Launch(t, c.Nodes...)...)
}

// Launch starts the given nodes only, each in a child process, without
// waiting: pass the channels to Wait. A node is ready once a quorum of the
// cluster runs, which may include a node opened with InProcess.
func (c *Cluster) Launch(t *testing.T, nodes ...*Node) []<-chan error {
	t.Helper()
	var readies []<-chan error
	for _, n := range nodes {
		readies = append(readies, n.start(t, c.routes))
	}
	return readies
}

// InProcess returns the options that open node n in the calling process
// (with coord.Open) instead of a child process, for tests that need to
// stop and start it quickly or watch it from inside.
func (c *Cluster) InProcess(n *Node) []coord.Option {
	return []coord.Option{
		coord.WithName(n.Name), coord.WithDataDir(n.Dir), coord.WithListen(n.Listen), nodetest.ListenAuth(),
		coord.WithCluster(routes(n.Route, c.routes)),
	}
}

// Restart starts a stopped node again and waits until it is ready.
func (c *Cluster) Restart(t *testing.T, n *Node) {
	t.Helper()
	Wait(t, 90*time.Second, n.start(t, c.routes))
}

// URLs returns the nodes' client URLs, which are known before they start.
// Clients log in with nodetest.ClientAuth.
func (c *Cluster) URLs() []string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, "nats://"+n.Listen)
	}
	return urls
}

// FreeAddr returns a free 127.0.0.1 address.
func FreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (n *Node) start(t *testing.T, peers []string) <-chan error {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), nodeEnv+"=1", "NODE_NAME="+n.Name, "NODE_DIR="+n.Dir,
		"NODE_ROUTE="+n.Route, "NODE_LISTEN="+n.Listen, "NODE_PEERS="+strings.Join(peers, ","))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.cmd = cmd
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			ready <- fmt.Errorf("%s exited before it was ready: %w", n.Name, err)
			return
		}
		n.URL = strings.TrimSpace(strings.TrimPrefix(line, "READY "))
		ready <- nil
		_, _ = io.Copy(io.Discard, out)
	}()
	return ready
}

// Kill9 kills the node's process with SIGKILL (no graceful shutdown) and
// waits for it to exit. It does nothing if the node is not running.
func (n *Node) Kill9() {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Kill()
		_ = n.cmd.Wait()
		n.cmd = nil
	}
}

// Wait waits for every channel to report, failing the test on an error or
// after within.
func Wait(t *testing.T, within time.Duration, chans ...<-chan error) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for _, ch := range chans {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-deadline.C:
			t.Fatalf("not ready within %v", within)
		}
	}
}
