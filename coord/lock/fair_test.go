package lock_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord/lock"
)

// TestLockGrantOrder checks that waiters in one process are granted the
// lock in the order they began waiting, and that a holder that unlocks and
// locks again queues behind them: waiters start one at a time, each only
// once the one before has joined the queue (the queued hook, not a sleep),
// while a holder has the lock. Tokens increase along the way.
func TestLockGrantOrder(t *testing.T) {
	const waiters = 6
	n := openNode(t)
	b := lock.FromNode(n)
	ctx := within(t, 60*time.Second)
	queued := make(chan int, waiters+1)
	queuedAs := func(i int) lock.Option {
		return lock.WithQueuedHookForTest(func(*lock.Session) { queued <- i })
	}
	holder := lock.NewMutex(b, "fair", lock.WithTTL(10*time.Second), queuedAs(-1))
	first, err := holder.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if i := <-queued; i != -1 {
		t.Fatalf("queued %d, want the holder", i)
	}
	var (
		mu     sync.Mutex
		order  []int
		tokens = []uint64{first}
		wg     sync.WaitGroup
		errs   = make(chan error, waiters)
	)
	record := func(i int, token uint64) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, i)
		tokens = append(tokens, token)
	}
	for i := range waiters {
		m := lock.NewMutex(b, "fair", lock.WithTTL(10*time.Second), queuedAs(i))
		wg.Go(func() {
			token, err := m.Lock(ctx)
			if err != nil {
				errs <- fmt.Errorf("waiter %d: %w", i, err)
				return
			}
			record(i, token)
			if err := m.Unlock(ctx); err != nil {
				errs <- fmt.Errorf("waiter %d: unlock: %w", i, err)
			}
		})
		if got := <-queued; got != i {
			t.Fatalf("queued %d, want %d", got, i)
		}
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// The holder locks again at once: it queues behind every waiter.
	again, err := holder.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	record(-1, again)
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want := []int{0, 1, 2, 3, 4, 5, -1}
	if !slices.Equal(order, want) {
		t.Errorf("granted in order %v, want %v (-1: the holder again)", order, want)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Errorf("token %d after %d", tokens[i], tokens[i-1])
		}
	}
}

// TestTurnPassesWhenWaiterGivesUp checks that a waiter queued behind
// another of its process gets the turn when the one ahead gives up (its
// ctx ends), and the lock when the holder's grant ends without Unlock (its
// session closed).
func TestTurnPassesWhenWaiterGivesUp(t *testing.T) {
	n := openNode(t)
	b := lock.FromNode(n)
	ctx := within(t, 30*time.Second)
	s, err := lock.NewSession(ctx, b, lock.WithTTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	queued := make(chan struct{}, 2)
	hook := lock.WithQueuedHookForTest(func(*lock.Session) { queued <- struct{}{} })
	holder := lock.NewMutex(b, "ends", lock.WithSession(s))
	if _, err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	quitter := lock.NewMutex(b, "ends", lock.WithTTL(10*time.Second), hook)
	qctx, quit := context.WithCancel(ctx)
	quitErr := make(chan error, 1)
	go func() {
		_, err := quitter.Lock(qctx)
		quitErr <- err
	}()
	<-queued
	waiter := lock.NewMutex(b, "ends", lock.WithTTL(10*time.Second), hook)
	got := make(chan error, 1)
	go func() {
		_, err := waiter.Lock(ctx)
		got <- err
	}()
	<-queued
	quit()
	if err := <-quitErr; err == nil {
		t.Fatal("Lock after its ctx ended: nil error")
	}
	closed := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(closed); d > 3*time.Second {
		t.Errorf("waiter took %v after the holder's session closed", d)
	}
	if err := waiter.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}
