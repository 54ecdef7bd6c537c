package registry_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/registry"
	"github.com/concordrpc/concord/internal/clustertest"
)

// A registrar in client mode survives a restart of its coordination node
// that outlasts its lease: after the node comes back on the same data
// directory and port, the client reconnects, the registrar finds its key
// expired and registers again, and resolvers (the client's own, whose
// watcher had to be re-created, and a new one on the node) see the
// instance again.
func TestNodeRestartReregisters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := listeningNode(t, dir, "127.0.0.1:-1")
	u, err := url.Parse(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	cli := clientNode(t, srv.ClientURL())
	const svc, ttl = "restart", 2 * time.Second
	r := register(t, cli, registry.Registration{Service: svc, ID: "x", BaseURL: "http://127.0.0.1:1", Ready: true}, registry.WithTTL(ttl))
	res := resolver(t, cli, registry.ResolverRelistInterval(time.Second))
	if _, err := res.Resolve(within(t, 5*time.Second), svc); err != nil {
		t.Fatal(err)
	}
	key := r.Key()

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl + time.Second) // the lease ends while the node is down
	srv = listeningNode(t, dir, u.Host)
	restarted := time.Now()

	// Reconnecting takes up to the client's reconnect wait (2s), then the
	// next heartbeat (at most TTL/3 after a failed one) re-registers.
	fresh := resolver(t, srv)
	const bound = 2*time.Second + ttl
	await(t, bound, "instance registered again on the restarted node", func() bool { return len(resolveNow(fresh, svc)) == 1 })
	t.Logf("registered again %v after the restart; Reregistrations = %d", time.Since(restarted), r.Reregistrations())
	await(t, bound, "client resolver sees the instance", func() bool { return len(resolveNow(res, svc)) == 1 })

	// The lease is refreshed again: the key outlives another TTL.
	kv, err := srv.JetStream().KeyValue(within(t, 5*time.Second), coord.BucketRegistry)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl + ttl/2)
	if _, err := kv.Get(within(t, 5*time.Second), key); err != nil {
		t.Fatalf("key after another TTL: %v", err)
	}
	if got := resolveNow(fresh, svc); len(got) != 1 {
		t.Fatalf("Resolve after another TTL = %v", got)
	}
	if r.Reregistrations() != 1 {
		t.Fatalf("Reregistrations = %d, want 1 (the lease ended during the outage)", r.Reregistrations())
	}

	// Closing a resolver whose node is unreachable is bounded too: deleting
	// its watcher's consumer gives up after 2s.
	_ = fresh.Close()
	_ = srv.Close()
	start := time.Now()
	_ = res.Close()
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Resolver.Close with the node down took %v", took)
	}
}

// TestNodeKill9WithinTTL kills -9 the node a client-mode registrar is
// connected to, in a three-node cluster (JetStream needs a cluster for a
// node in a child process), and restarts it within the lease: the
// registration is still there, the heartbeats resume on the same lease
// (no re-registration), and resolvers see the instance after the next TTL.
func TestNodeKill9WithinTTL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a node in a child process")
	}
	c := clustertest.New(t, 3)
	c.Start(t)
	cli := clientNode(t, c.URLs()[0])
	const svc, ttl = "kill9", 20 * time.Second
	r := register(t, cli, registry.Registration{Service: svc, ID: "x", BaseURL: "http://127.0.0.1:1", Ready: true}, registry.WithTTL(ttl))
	c.Nodes[0].Kill9()
	killed := time.Now()
	c.Restart(t, c.Nodes[0])
	t.Logf("node back %v after the kill", time.Since(killed))
	if time.Since(killed) > ttl/2 {
		t.Skipf("the restart took %v, too long to test a lease that survives it", time.Since(killed))
	}
	srv := clientNode(t, c.URLs()[0])
	fresh := resolver(t, srv)
	await(t, ttl, "instance visible after the restart", func() bool { return len(resolveNow(fresh, svc)) == 1 })
	// Past the lease that was live at the kill: the heartbeats resumed.
	time.Sleep(time.Until(killed.Add(ttl + time.Second)))
	if got := resolveNow(fresh, svc); len(got) != 1 {
		t.Fatalf("instance gone a TTL after the kill: %v", got)
	}
	if n := r.Reregistrations(); n != 0 {
		t.Fatalf("Reregistrations = %d, want 0: the lease outlived the restart", n)
	}
}
