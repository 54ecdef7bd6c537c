package config_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/config"
	"github.com/concordrpc/concord/internal/clustertest"
	"github.com/concordrpc/concord/internal/nodetest"
	v1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1"
)

// TestClusterWatchersSeeEveryVersionInOrder: on a three-node cluster,
// versions written through a client of one node reach handles on clients
// of every node, each watcher receiving every version in order.
func TestClusterWatchersSeeEveryVersionInOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node cluster in child processes")
	}
	c := clustertest.New(t, 3)
	c.Start(t)
	open := func(i int) *coord.Node {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n, err := coord.Open(ctx, coord.WithClient([]string{c.URLs()[i]}, nodetest.ClientAuth()),
			coord.WithName(fmt.Sprint("client-", i)), nodetest.Quiet())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close() })
		return n
	}
	ctx := nodetest.Within(t, 90*time.Second)
	writer := config.NewStore(open(0))
	const versions = 40
	results := make([]chan []string, 3)
	for i := range 3 {
		h := handle(t, config.FromNode(open(i)), config.FromStore(openLocal(t, t.TempDir())), "pricing")
		waitLoaded(t, h)
		updates := h.Watch(ctx)
		<-updates // the default
		results[i] = make(chan []string, 1)
		go func() {
			var got []string
			var last uint64
			for u := range updates {
				if u.Version <= last || u.Skipped {
					got = append(got, fmt.Sprintf("out of order: %d after %d (skipped %v)", u.Version, last, u.Skipped))
				}
				last = u.Version
				got = append(got, u.Value.GetText())
				if len(got) >= versions {
					break
				}
			}
			results[i] <- got
		}()
	}
	var want []string
	var v uint64
	var err error
	for i := range versions {
		text := fmt.Sprint("price ", i)
		if v, err = writer.Set(ctx, "pricing", &v1.EchoRequest{Text: text}, v, "ops"); err != nil {
			t.Fatal(err)
		}
		want = append(want, text)
	}
	for i, ch := range results {
		select {
		case got := <-ch:
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("client of node %d saw %v, want %v", i+1, got, want)
			}
		case <-ctx.Done():
			t.Fatalf("client of node %d: not every version delivered", i+1)
		}
	}
}
