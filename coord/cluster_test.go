package coord_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/internal/clustertest"
	"github.com/concordrpc/concord/internal/nodetest"
)

// TestClusterSurvivesKill9 forms a 3-node cluster of child processes on
// loopback, with password-protected routes, writes through it, kills -9 each node in turn while writing,
// restarts it, and checks that writes resume within a bound and that every
// acknowledged write is still there, with R3 buckets throughout.
func TestClusterSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three node processes")
	}
	cluster := clustertest.New(t, 3)
	cluster.Start(t)

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	client, err := coord.Open(ctx, coord.WithClient(cluster.URLs(), nodetest.ClientAuth()), coord.WithName("tester"), quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	st, err := client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkR3 := func(st *coord.Status) {
		t.Helper()
		if len(st.Buckets) != 8 { // 5 buckets, 3 streams
			t.Fatalf("status lists %d buckets and streams, want 8: %+v", len(st.Buckets), st.Buckets)
		}
		for _, b := range st.Buckets {
			if b.Replicas != 3 {
				t.Fatalf("%s has %d replicas, want 3", b.Name, b.Replicas)
			}
		}
	}
	checkR3(st)
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
	for round, victim := range cluster.Nodes {
		victim.Kill9()
		if round == 0 {
			// A client-mode process that starts while a node is down, and
			// knows one server, sees fewer than three: it must not shrink
			// the buckets to R1.
			late, err := coord.Open(ctx, coord.WithClient(cluster.URLs()[1:2], nodetest.ClientAuth()), coord.WithName("late"), quiet())
			if err != nil {
				t.Fatal(err)
			}
			// Nor would it create a missing bucket at R1: its default
			// comes from the server's cluster, not the two it sees.
			if r := late.Replicas(); r != 3 {
				t.Fatalf("a client-mode node started with one of three nodes down defaults to R%d, want R3", r)
			}
			// Status reports a stream that does not answer in time as
			// unknown: read again until every stream answered.
			var st *coord.Status
			for i := 0; i < 30; i++ {
				if st, err = late.Status(ctx); err != nil || !slices.ContainsFunc(st.Buckets, func(b coord.BucketStatus) bool { return b.Unknown != "" && b.Replicas == 0 }) {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			_ = late.Close()
			if err != nil {
				t.Fatal(err)
			}
			checkR3(st)
		}
		// Raft leader elections in nats-server take a few seconds.
		for i := 0; i < 10; i++ {
			put(fmt.Sprintf("during.%d.%d", round, i), victim.Name, 30*time.Second)
		}
		cluster.Restart(t, victim)
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
