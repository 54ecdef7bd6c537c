package lock_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/internal/nodetest"
)

// TestLockGrantOrder checks that waiters in one process are granted the
// lock in the order they began waiting, and that a holder that unlocks and
// locks again queues behind them: waiters start one at a time, each only
// once the one before has joined the queue (the queued hook, not a sleep),
// while a holder has the lock. Tokens increase along the way.
func TestLockGrantOrder(t *testing.T) {
	n := openNode(t)
	b := lock.FromNode(n)
	ctx := within(t, 60*time.Second)
	holder := lock.NewMutex(b, "fair", lock.WithTTL(10*time.Second))
	first, err := holder.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l := startWaiters(ctx, t, 6, "fair", func(int) lock.Backend { return b }, first)
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// The holder locks again at once: it queues behind every waiter.
	again, err := holder.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l.record(-1, again)
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	l.check(t, []int{0, 1, 2, 3, 4, 5, -1}) // -1: the holder again
}

// grantLog records the grants of waiters started by startWaiters.
type grantLog struct {
	mu     sync.Mutex
	order  []int    // waiters, in the order of their grants
	tokens []uint64 // their tokens, after the first holder's
	wg     sync.WaitGroup
	errs   chan error
}

func (l *grantLog) record(i int, token uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.order = append(l.order, i)
	l.tokens = append(l.tokens, token)
}

// startWaiters starts n waiters on the lock name, waiter i over
// backend(i), while a holder with token first has it. Each waiter starts
// once the one before has joined the line (the queued hook, not a
// sleep), locks, records its grant and unlocks.
func startWaiters(ctx context.Context, t *testing.T, n int, name string, backend func(i int) lock.Backend, first uint64) *grantLog {
	t.Helper()
	l := &grantLog{tokens: []uint64{first}, errs: make(chan error, 2*n)}
	queued := make(chan int, n)
	for i := range n {
		m := lock.NewMutex(backend(i), name, lock.WithTTL(10*time.Second),
			lock.WithQueuedHookForTest(func(*lock.Session) { queued <- i }))
		l.wg.Go(func() {
			token, err := m.Lock(ctx)
			if err != nil {
				l.errs <- fmt.Errorf("waiter %d: %w", i, err)
				return
			}
			l.record(i, token)
			if err := m.Unlock(ctx); err != nil {
				l.errs <- fmt.Errorf("waiter %d: unlock: %w", i, err)
			}
		})
		select {
		case got := <-queued:
			if got != i {
				t.Fatalf("queued %d, want %d", got, i)
			}
		case <-ctx.Done():
			t.Fatalf("waiter %d did not queue", i)
		}
	}
	return l
}

// check waits for the waiters, reports their errors, and checks that they
// were granted in the order want and that tokens strictly increase.
func (l *grantLog) check(t *testing.T, want []int) {
	t.Helper()
	l.wg.Wait()
	close(l.errs)
	for err := range l.errs {
		t.Error(err)
	}
	if !slices.Equal(l.order, want) {
		t.Errorf("granted in order %v, want %v", l.order, want)
	}
	for i := 1; i < len(l.tokens); i++ {
		if l.tokens[i] <= l.tokens[i-1] {
			t.Errorf("token %d after %d", l.tokens[i], l.tokens[i-1])
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

// openClients opens an embedded node that listens on loopback and n
// client-mode nodes connected to it: n+1 connections, as n+1 processes
// would have.
func openClients(t *testing.T, n int) (*coord.Node, []*coord.Node) {
	t.Helper()
	node := openNode(t, coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth())
	ctx := within(t, 20*time.Second)
	clients := make([]*coord.Node, n)
	for i := range clients {
		c, err := coord.Open(ctx, coord.WithClient([]string{node.ClientURL()}, nodetest.ClientAuth()),
			coord.WithName(fmt.Sprint("client", i)), quiet())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		clients[i] = c
	}
	return node, clients
}

// TestLockGrantOrderAcrossProcesses checks that waiters on different
// connections (processes) are granted the lock in the order they began
// waiting: a holder on the node's own connection has the lock while
// waiters alternate between two client connections, each starting only
// once the one before has published its ticket (the queued hook); then
// the holder releases. The order and tokens are checked, not timing.
func TestLockGrantOrderAcrossProcesses(t *testing.T) {
	node, clients := openClients(t, 2)
	ctx := within(t, 60*time.Second)
	holder := lock.NewMutex(lock.FromNode(node), "fair-across", lock.WithTTL(10*time.Second))
	first, err := holder.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l := startWaiters(ctx, t, 6, "fair-across", func(i int) lock.Backend { return lock.FromNode(clients[i%2]) }, first)
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	l.check(t, []int{0, 1, 2, 3, 4, 5})
}

// line is a holder with two waiters queued behind it, on two client
// connections: first (on clients[0]) ahead of second (on clients[1]).
type line struct {
	clients             []*coord.Node
	holder, second      *lock.Mutex
	firstErr, secondErr chan error
}

// lineUp makes a line on name: the holder locks, then first locks with
// TTL firstTTL and ctx firstCtx, then second; each waiter starts once
// the one before it has published its ticket (the queued hook).
func lineUp(t *testing.T, ctx, firstCtx context.Context, name string, firstTTL time.Duration) *line {
	t.Helper()
	node, clients := openClients(t, 2)
	queued := make(chan struct{}, 2)
	hook := lock.WithQueuedHookForTest(func(*lock.Session) { queued <- struct{}{} })
	l := &line{clients: clients, firstErr: make(chan error, 1), secondErr: make(chan error, 1)}
	l.holder = lock.NewMutex(lock.FromNode(node), name, lock.WithTTL(30*time.Second))
	if _, err := l.holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	first := lock.NewMutex(lock.FromNode(clients[0]), name, lock.WithTTL(firstTTL), hook)
	l.second = lock.NewMutex(lock.FromNode(clients[1]), name, lock.WithTTL(30*time.Second), hook)
	for _, w := range []struct {
		m   *lock.Mutex
		ctx context.Context
		err chan error
	}{{first, firstCtx, l.firstErr}, {l.second, ctx, l.secondErr}} {
		go func() {
			_, err := w.m.Lock(w.ctx)
			w.err <- err
		}()
		select {
		case <-queued:
		case <-ctx.Done():
			t.Fatal("a waiter did not queue")
		}
	}
	return l
}

// TestDeadWaiterBlocksAtMostItsTicket kills the connection of the first
// waiter in line (its process dies: nothing removes its ticket), and
// checks that the next waiter, on another connection, is granted the lock
// once the holder releases and the dead waiter's ticket expires (its TTL,
// 1s), long before the 30s TTLs of the others.
func TestDeadWaiterBlocksAtMostItsTicket(t *testing.T) {
	ctx := within(t, 30*time.Second)
	l := lineUp(t, ctx, ctx, "dead-waiter", time.Second)
	l.clients[0].Conn().Close() // as a crash: no ticket removal
	if err := <-l.firstErr; !errors.Is(err, lock.ErrLeaseLost) {
		t.Fatalf("dead waiter's Lock: %v, want ErrLeaseLost", err)
	}
	if err := l.holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-l.secondErr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the next waiter was not granted within 15s: the dead waiter's ticket blocks it")
	}
	if err := l.second.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestCancelledWaiterLeavesLine checks that a waiter that gives up (its
// ctx ends) removes its ticket: the waiter behind it, on another
// connection, is granted the lock after the holder releases, without
// waiting for the quitter's ticket to expire (its TTL, 30s, is beyond the
// test's bound).
func TestCancelledWaiterLeavesLine(t *testing.T) {
	ctx := within(t, 20*time.Second)
	qctx, quit := context.WithCancel(ctx)
	l := lineUp(t, ctx, qctx, "quitter", 30*time.Second)
	quit()
	if err := <-l.firstErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("quitter's Lock: %v, want context.Canceled", err)
	}
	if err := l.holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-l.secondErr; err != nil {
		t.Fatalf("second waiter's Lock: %v (the quitter's ticket still blocks it?)", err)
	}
	if err := l.second.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTryLockDoesNotBarge checks that TryLock does not take a free key
// while a ticket waits for it: the only waiter's connection is killed (its
// ticket stays until its TTL), the holder releases, and TryLock finds the
// key taken; Lock then gets it once the ticket expired.
func TestTryLockDoesNotBarge(t *testing.T) {
	node, clients := openClients(t, 1)
	ctx := within(t, 30*time.Second)
	holder := lock.NewMutex(lock.FromNode(node), "no-barging", lock.WithTTL(10*time.Second))
	if _, err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	queued := make(chan struct{}, 1)
	dead := lock.NewMutex(lock.FromNode(clients[0]), "no-barging", lock.WithTTL(3*time.Second),
		lock.WithQueuedHookForTest(func(*lock.Session) { queued <- struct{}{} }))
	deadErr := make(chan error, 1)
	go func() {
		_, err := dead.Lock(ctx)
		deadErr <- err
	}()
	<-queued
	clients[0].Conn().Close()
	<-deadErr
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	other := lock.NewMutex(lock.FromNode(node), "no-barging")
	if _, err := other.TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock with a ticket waiting: %v, want ErrLocked", err)
	}
	if _, err := other.Lock(ctx); err != nil {
		t.Fatalf("Lock after the dead waiter's ticket expired: %v", err)
	}
	if err := other.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTicketLikeNames checks that a lock or election may be named like a
// ticket key: keys of locks and elections have their own prefixes, so
// such a name neither collides with the tickets of a waited-for lock nor
// counts as one of them.
func TestTicketLikeNames(t *testing.T) {
	node := openNode(t)
	b := lock.FromNode(node)
	ctx := within(t, 30*time.Second)
	holder := lock.NewMutex(b, "a", lock.WithTTL(10*time.Second))
	if _, err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	queued := make(chan struct{}, 1)
	waiter := lock.NewMutex(b, "a", lock.WithTTL(10*time.Second), lock.WithQueuedHookForTest(func(*lock.Session) { queued <- struct{}{} }))
	got := make(chan error, 1)
	go func() {
		_, err := waiter.Lock(ctx)
		got <- err
	}()
	<-queued
	for _, name := range []string{"_cq", "_cq.mutex.a", "_cq.election.a"} {
		if err := lock.CheckName(name); err != nil {
			t.Fatalf("CheckName(%q): %v", name, err)
		}
		m := lock.NewMutex(b, name)
		if _, err := m.TryLock(ctx); err != nil {
			t.Fatalf("TryLock(%q) beside a waited-for lock: %v", name, err)
		}
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		e := lock.NewElection(b, name)
		if _, err := e.Campaign(ctx, "x"); err != nil {
			t.Fatalf("Campaign(%q): %v", name, err)
		}
		if err := e.Resign(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("the waiter on a: %v", err)
	}
	if err := waiter.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}
