package registry_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/registry"
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
