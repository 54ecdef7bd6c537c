package registry_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
// (a newer heartbeat lands on the key before the message that was live at
// the kill expires, and there is no re-registration), and resolvers see
// the instance. It fails if the kill loses the key (the write was not
// durable on the cluster), if the registrar stops heartbeating after a
// reconnect, or if it takes the reconnect for a lost lease and registers
// again.
//
// The TTL is long so that the restart fits in it under load. The test
// never skips: if a slow restart lets the lease lapse, it fails, and the
// failure names the restart's duration and its budget. Heartbeats come
// every TTL/3, so
// the lease live at the kill ends 2TTL/3 after the kill at the earliest
// (60s). A heartbeat sent into the dead connection times out after TTL/3
// and is retried TTL/12 later, and the client reconnects within 2s of the
// node's return: if the node is back within TTL/3 (30s) of the kill, a
// heartbeat lands by TTL/3 + TTL/12 + 2s (about 40s), 20s before the
// lease can end. The restart takes about 6s on an idle machine, so the
// budget is five times that. The test waits for the next heartbeat, not
// for a whole TTL, so it lasts about TTL/3 after the registration.
func TestNodeKill9WithinTTL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a node in a child process")
	}
	c := clustertest.New(t, 3)
	c.Start(t)
	cli := clientNode(t, c.URLs()[0])
	const svc, ttl = "kill9", 90 * time.Second
	const restartBudget = ttl / 3
	r := register(t, cli, registry.Registration{Service: svc, ID: "x", BaseURL: "http://127.0.0.1:1", Ready: true}, registry.WithTTL(ttl))
	kv, err := cli.JetStream().KeyValue(within(t, 5*time.Second), coord.BucketRegistry)
	if err != nil {
		t.Fatal(err)
	}
	live, err := kv.Get(within(t, 5*time.Second), r.Key()) // the message whose lease runs at the kill
	if err != nil {
		t.Fatal(err)
	}
	c.Nodes[0].Kill9()
	killed := time.Now()
	c.Restart(t, c.Nodes[0])
	back := time.Since(killed)
	t.Logf("node back %v after the kill (budget %v)", back, restartBudget)
	// Said in every failure below: a restart past its budget explains one.
	why := fmt.Sprintf("the node was back %v after the kill; the lease survives a restart within %v", back, restartBudget)

	srv := clientNode(t, c.URLs()[0])
	fresh := resolver(t, srv)
	await(t, ttl, "instance visible after the restart ("+why+")", func() bool { return len(resolveNow(fresh, svc)) == 1 })
	// The heartbeats resumed before the live message expired.
	kvs, err := srv.JetStream().KeyValue(within(t, 5*time.Second), coord.BucketRegistry)
	if err != nil {
		t.Fatal(err)
	}
	expires := live.Created().Add(ttl)
	var beat jetstream.KeyValueEntry
	await(t, time.Until(expires), "a heartbeat after the restart, before the lease live at the kill ends ("+why+")", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		e, err := kvs.Get(ctx, r.Key())
		if err == nil && e.Revision() > live.Revision() {
			beat = e
			return true
		}
		return false
	})
	t.Logf("first heartbeat after the kill %v after it", beat.Created().Sub(killed).Round(time.Millisecond))
	if !beat.Created().Before(expires) || !beat.Created().After(killed) {
		t.Fatalf("heartbeat written at %v, want after the kill (%v) and before the lease's end (%v); %s", beat.Created(), killed, expires, why)
	}
	if n := r.Reregistrations(); n != 0 {
		t.Fatalf("Reregistrations = %d, want 0: the lease outlived the restart (%s)", n, why)
	}
	if got := resolveNow(fresh, svc); len(got) != 1 {
		t.Fatalf("instance gone after the heartbeats resumed: %v", got)
	}
}
