package lock

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/internal/condkv"
	"github.com/concordrpc/concord/internal/nodetest"
)

// TestFallbackWhileWatchIsSilent: the waiter's shared watch stops
// delivering (as an ordered consumer that cannot re-create itself does),
// and then another process releases the key. The waiter still reads the
// key a TTL (1 s here) after its last read, however often its ticket's
// refreshes (every TTL/3) wake it, and takes the key.
func TestFallbackWhileWatchIsSilent(t *testing.T) {
	node := nodetest.Open(t, coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth())
	ctx := nodetest.Within(t, 30*time.Second)
	client, err := coord.Open(ctx, coord.WithClient([]string{node.ClientURL()}, nodetest.ClientAuth()), coord.WithName("c"), nodetest.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const name = "stuck"
	key := "mutex." + name
	holder := NewMutex(FromNode(client), name, WithTTL(30*time.Second))
	if _, err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	b := condkv.New(node.JetStream(), node.Conn(), coord.BucketLocks)
	cw, err := b.Watch(ctx, "unrelated.never", condkv.WatchConfig{}, func(string, jetstream.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	h := watchHubOf(node)
	sw := &sharedWatch{hub: h, k: watchKey{stream: b.Stream(), key: key}, ready: make(chan struct{}),
		subs: map[*watch]struct{}{}, view: newKeyView(key), cw: cw, refs: 1}
	close(sw.ready)
	h.mu.Lock()
	h.keys[sw.k] = sw
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.keys, sw.k)
		h.mu.Unlock()
		cw.Stop()
	}()

	queued := make(chan struct{}, 1)
	w := NewMutex(FromNode(node), name, WithTTL(time.Second),
		WithQueuedHookForTest(func(*Session) { queued <- struct{}{} }))
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { _, err := w.Lock(wctx); errc <- err }()
	<-queued
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
		_ = w.Unlock(ctx)
	case <-time.After(6 * time.Second):
		cancel()
		<-errc
		t.Errorf("waiter (TTL 1s) not granted 6s after the key was freed: its fallback read never came")
	}
}
