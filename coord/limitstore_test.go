package coord_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/internal/condkv"
	"github.com/concordrpc/concord/internal/nodetest"
)

// limitStores opens one node with a client listener and n LimitStores on
// their own client-mode connections to it, as n instances would have.
func limitStores(t *testing.T, n int) (*coord.Node, []*coord.LimitStore) {
	t.Helper()
	node := nodetest.Open(t, coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth())
	var stores []*coord.LimitStore
	for range n {
		ctx := nodetest.Within(t, 20*time.Second)
		c, err := coord.Open(ctx, coord.WithClient([]string{node.ClientURL()}, nodetest.ClientAuth()), coord.WithName("instance"), quiet())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		s, err := c.LimitStore(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	return node, stores
}

// longLimitMarkers makes the expiry markers of node's limits bucket live a
// minute instead of a second, so that a test reads the marker, and the
// store writes over it, whatever the machine's load: with a second, a
// paused test could find the marker gone (and the key free) and pass
// without exercising it.
func longLimitMarkers(ctx context.Context, t *testing.T, node *coord.Node) {
	t.Helper()
	s, err := node.JetStream().Stream(ctx, "KV_"+coord.BucketLimits)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.MaxMsgsPerSubject != 1 || cfg.SubjectDeleteMarkerTTL <= 0 {
		t.Fatalf("limits bucket: history %d, marker TTL %v; want 1 and markers", cfg.MaxMsgsPerSubject, cfg.SubjectDeleteMarkerTTL)
	}
	cfg.SubjectDeleteMarkerTTL = time.Minute
	if _, err := node.JetStream().UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// waitExpired waits until the limits bucket's only key expired: the KV
// API no longer shows it, while the stream's last message for it is the
// expiry marker (read with condkv.Last: a sequence, not live). It returns
// the marker.
func waitExpired(ctx context.Context, t *testing.T, node *coord.Node) (key string, marker condkv.Entry) {
	t.Helper()
	b := condkv.New(node.JetStream(), node.Conn(), coord.BucketLimits)
	var keys []string
	var live condkv.Entry
	if err := b.LastAll(ctx, ">", func(k string, e condkv.Entry) { keys, live = append(keys, k), e }); err != nil || len(keys) != 1 {
		t.Fatalf("the bucket holds %v (%v), want one key", keys, err)
	}
	kv, err := node.JetStream().KeyValue(ctx, coord.BucketLimits)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if _, err := kv.Get(ctx, keys[0]); errors.Is(err, jetstream.ErrKeyNotFound) {
			break
		}
		if i > 200 {
			t.Fatal("the limit's key did not expire within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	marker, err = b.Last(ctx, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	if marker.Live || marker.Seq <= live.Seq {
		t.Fatalf("the expired key's last message is %+v; want its expiry marker (a sequence after %d, not live)", marker, live.Seq)
	}
	return keys[0], marker
}

// TestLimitStoreGrantsWithinBurst: a fresh key grants its burst, then
// nothing until tokens accrue, with a retry delay that says when.
func TestLimitStoreGrantsWithinBurst(t *testing.T) {
	_, stores := limitStores(t, 1)
	s := stores[0]
	ctx := nodetest.Within(t, 20*time.Second)
	granted, retry, err := s.Acquire(ctx, "k", 10, 1, time.Minute, 3)
	if err != nil || granted != 3 || retry != 0 {
		t.Fatalf("first Acquire: granted %d, retry %v, err %v; want 3, 0, nil", granted, retry, err)
	}
	granted, retry, err = s.Acquire(ctx, "k", 1, 1, time.Minute, 3)
	if err != nil || granted != 0 || retry < 50*time.Second {
		t.Fatalf("Acquire past the burst: granted %d, retry %v, err %v; want 0, about 1m, nil", granted, retry, err)
	}
	// Released tokens can be taken again.
	if err := s.Release(ctx, "k", 2, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if granted, _, err = s.Acquire(ctx, "k", 5, 1, time.Minute, 3); err != nil || granted != 2 {
		t.Fatalf("Acquire after releasing 2: granted %d, err %v; want 2, nil", granted, err)
	}
}

// TestLimitStoreAfterExpiry: when a key's state expires, the server
// leaves an expiry marker (for a second) that the KV API hides. The store
// must write over it (expecting the marker's sequence) and grant a full
// burst again; the old store conflicted with the hidden marker on every
// attempt and failed with ErrLimitContention while still reporting a
// grant.
func TestLimitStoreAfterExpiry(t *testing.T) {
	node := nodetest.Open(t)
	ctx := nodetest.Within(t, 30*time.Second)
	longLimitMarkers(ctx, t, node)
	s, err := node.LimitStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 10 per second, burst 2: the key lives about 2 s.
	if g, _, err := s.Acquire(ctx, "k", 2, 10, time.Second, 2); err != nil || g != 2 {
		t.Fatalf("Acquire: %d, %v", g, err)
	}
	key, marker := waitExpired(ctx, t, node)
	g, _, err := s.Acquire(ctx, "k", 2, 10, time.Second, 2)
	if err != nil || g != 2 {
		t.Fatalf("Acquire right after expiry: granted %d, err %v; want the full burst of 2 and no error", g, err)
	}
	// The grant was written right after the marker, which was still there
	// (it lives a minute): the store expected the marker's sequence.
	e, err := condkv.New(node.JetStream(), node.Conn(), coord.BucketLimits).Last(ctx, key)
	if err != nil || !e.Live || e.Seq != marker.Seq+1 {
		t.Fatalf("the key after the grant: %+v, %v; want a live state written after the marker at %d", e, err, marker.Seq)
	}
}

// TestLimitStoreNoGrantWithError: a store whose connection is closed
// returns an error and grants nothing.
func TestLimitStoreNoGrantWithError(t *testing.T) {
	node := nodetest.Open(t)
	ctx := nodetest.Within(t, 20*time.Second)
	s, err := node.LimitStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = node.Close()
	g, retry, err := s.Acquire(ctx, "k", 1, 1, time.Second, 1)
	if err == nil || g != 0 || retry != 0 {
		t.Fatalf("Acquire on a closed node: granted %d, retry %v, err %v; want 0, 0 and an error", g, retry, err)
	}
}

// TestLimitStoreSharedAcrossInstancesAfterIdle: three instances share a
// key; right after it sat idle past its TTL (expired, marker left), their
// concurrent grants together stay within rate*t + burst.
func TestLimitStoreSharedAcrossInstancesAfterIdle(t *testing.T) {
	node, stores := limitStores(t, 3)
	ctx := nodetest.Within(t, 60*time.Second)
	longLimitMarkers(ctx, t, node)
	const rate, burst = 5, 5
	for _, s := range stores {
		if _, _, err := s.Acquire(ctx, "shared", 1, rate, time.Second, burst); err != nil {
			t.Fatal(err)
		}
	}
	// Idle past the key's TTL: its last message is the expiry marker,
	// which lives a minute, so every instance's first read finds it.
	key, marker := waitExpired(ctx, t, node)
	var total atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for _, s := range stores {
		wg.Go(func() {
			for time.Since(start) < time.Second {
				g, _, err := s.Acquire(context.WithoutCancel(ctx), "shared", 1, rate, time.Second, burst)
				if err != nil {
					t.Errorf("Acquire: %v", err)
					return
				}
				total.Add(int64(g))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	bound := int64(float64(rate)*elapsed.Seconds()) + burst + 1
	if got := total.Load(); got > bound || got < burst {
		t.Fatalf("three instances were granted %d in %v; want between %d and %d", got, elapsed, burst, bound)
	}
	// The first grant after the idle period was written over the marker.
	if e, err := condkv.New(node.JetStream(), node.Conn(), coord.BucketLimits).Last(ctx, key); err != nil || !e.Live || e.Seq <= marker.Seq {
		t.Fatalf("the key after the grants: %+v, %v; want a live state written after the marker at %d", e, err, marker.Seq)
	}
}
