package coord_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/concordrpc/concord/internal/clustertest"
)

// TestClusterClosedToStrangers starts a three-node cluster (routes with a
// password, as clusters must have) and tries to get in as a stranger
// would: a rogue nats-server routing in without credentials and with a
// wrong password, and a NATS client without credentials. All are refused.
// A rogue with the right password joins, which shows that the test would
// see a rogue that got in.
func TestClusterClosedToStrangers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three node processes")
	}
	cluster := clustertest.New(t, 3)
	cluster.Start(t)
	target := cluster.Nodes[0]
	user, password := clustertest.RouteCredentials()

	// rogueReaches starts a nats-server that routes to the target with
	// the given credentials and reports whether a client of that rogue
	// server can use the cluster's JetStream (list its streams) within
	// the given time. Route counts are no evidence: a refused route is
	// counted for a moment before the peer closes it.
	rogueReaches := func(u *url.Userinfo, within time.Duration) bool {
		t.Helper()
		route := &url.URL{Scheme: "nats-route", Host: target.Route, User: u}
		rogue, err := server.NewServer(&server.Options{
			ServerName: "rogue", Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "concord", Host: "127.0.0.1", Port: -1},
			Routes:  []*url.URL{route},
		})
		if err != nil {
			t.Fatal(err)
		}
		rogue.Start()
		defer func() {
			rogue.Shutdown()
			rogue.WaitForShutdown()
		}()
		if !rogue.ReadyForConnections(5 * time.Second) {
			t.Fatal("the rogue server did not start")
		}
		nc, err := nats.Connect(rogue.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		deadline := time.Now().Add(within)
		for i := 0; i < 1000 && time.Now().Before(deadline); i++ {
			res, err := nc.Request("$JS.API.STREAM.NAMES", nil, 500*time.Millisecond)
			if err == nil && strings.Contains(string(res.Data), "KV_concord_locks") {
				return true
			}
			time.Sleep(100 * time.Millisecond)
		}
		return false
	}
	if rogueReaches(nil, 3*time.Second) {
		t.Error("a rogue server without credentials reached the cluster's JetStream")
	}
	if rogueReaches(url.UserPassword(user, "wrong"), 3*time.Second) {
		t.Error("a rogue server with a wrong password reached the cluster's JetStream")
	}
	if !rogueReaches(url.UserPassword(user, password), 20*time.Second) {
		t.Error("a server with the right route password did not reach the cluster: the test cannot see a rogue that gets in")
	}

	nc, err := nats.Connect(target.URL, nats.Timeout(5*time.Second), nats.MaxReconnects(0))
	if err == nil {
		nc.Close()
		t.Fatal("a NATS client without credentials connected to a cluster node")
	}
	if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("an unauthenticated client got %v, want an authorization violation", err)
	}
}
