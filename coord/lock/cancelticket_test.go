package lock_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/internal/nodetest"
)

// TestCancelDuringFirstTicketPublish: a waiter's context ends while its
// first ticket publish is in flight (committed, its answer held back).
// The ticket it may have left is found and removed, so it does not hold
// up the line for its TTL (20 s): a Lock on the freed key succeeds at
// once.
func TestCancelDuringFirstTicketPublish(t *testing.T) {
	node := openNode(t, coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth())
	ctx := within(t, 60*time.Second)
	p := newStallProxy(t, listenAddr(t, node))
	qn := clientVia(t, p)
	const name = "orphan"
	holder := lock.NewMutex(lock.FromNode(node), name, lock.WithTTL(30*time.Second))
	if _, err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	qctx, quit := context.WithCancel(ctx)
	defer quit()
	var once sync.Once
	sub, err := node.Conn().Subscribe("$KV.concord_locks._cq.mutex."+name+".*", func(*nats.Msg) {
		once.Do(func() {
			p.setStall(true) // hold back the publish's answer
			quit()
			time.AfterFunc(500*time.Millisecond, func() { p.setStall(false) })
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	q := lock.NewMutex(lock.FromNode(qn), name, lock.WithTTL(20*time.Second))
	if _, err := q.Lock(qctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("quitter: %v", err)
	}
	p.setStall(false)
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // removal markers (1 s) gone
	// TryLock does not take a key others wait for: with the quitter's
	// ticket left behind it would say ErrLocked for the ticket's TTL.
	other := lock.NewMutex(lock.FromNode(node), name)
	if _, err := other.TryLock(ctx); err != nil {
		t.Fatalf("TryLock on the free key after the quitter left: %v (its ticket was left behind)", err)
	}
	if err := other.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}
