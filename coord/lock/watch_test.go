package lock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/lock"
)

// consumerSlack is what the consumer-count bounds allow beyond one consumer
// per watched key: an ordered consumer that re-creates itself (after a
// missed heartbeat) creates its new consumer while the deletion of the old
// one is still in flight.
const consumerSlack = 2

// consumerMonitor polls a stream's consumer count every 20ms and keeps the
// highest count seen.
type consumerMonitor struct {
	s    jetstream.Stream
	mu   sync.Mutex // Stream.Info stores what it read: one call at a time
	max  atomic.Int64
	once sync.Once
	stop chan struct{}
	done chan struct{}
}

func monitorConsumers(ctx context.Context, t *testing.T, js jetstream.JetStream, stream string) *consumerMonitor {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	m := &consumerMonitor{s: s, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if n, err := m.count(ctx); err == nil && int64(n) > m.max.Load() {
				m.max.Store(int64(n))
			}
			select {
			case <-m.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

func (m *consumerMonitor) count(ctx context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	info, err := m.s.Info(rctx)
	if err != nil {
		return 0, err
	}
	return info.State.Consumers, nil
}

// end stops the polling and returns the highest count seen. It is
// idempotent.
func (m *consumerMonitor) end() int {
	m.once.Do(func() { close(m.stop) })
	<-m.done
	return int(m.max.Load())
}

// waitConsumers waits, at most d, until the stream has at most want
// consumers, and returns how long that took. It works after end.
func (m *consumerMonitor) waitConsumers(ctx context.Context, t *testing.T, want int, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		n, err := m.count(ctx)
		if err == nil && n <= want {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("%d consumers (err %v) %v after the waiters were done, want at most %d", n, err, d, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitWaiters waits, at most 15s, until want waiters use shared watches on
// node.
func waitWaiters(t *testing.T, node *coord.Node, want int) {
	t.Helper()
	for end := time.Now().Add(15 * time.Second); ; {
		_, n := lock.SharedWatchesForTest(node)
		if n >= want {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%d waiters on shared watches after 15s, want %d", n, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSharedWatchesBounded runs 64 waiters on 8 keys in one process, each
// with a Session of its own, and checks that they share one watch (one
// consumer) per key: the locks stream never has more than 8 consumers (plus
// consumerSlack), every waiter is woken by its watch (no watch creation
// failed, no fallback timer fired), at most one waiter holds a key at a
// time, and the consumers are gone within 5s of the last waiter's return,
// long before the server would reap them (30s).
func TestSharedWatchesBounded(t *testing.T) {
	const (
		keys       = 8
		perKey     = 8
		ttl        = 10 * time.Second // no fallback timer fires in this test unless the watch misses
		maxWatches = keys + consumerSlack
	)
	n := openNode(t)
	b := lock.FromNode(n)
	ctx := within(t, 90*time.Second)
	mon := monitorConsumers(ctx, t, n.JetStream(), "KV_"+coord.BucketLocks)
	defer mon.end()

	var watchFailed, timerWakes atomic.Int64
	granted := lock.WithGrantedHookForTest(func(s *lock.Session) {
		f, w := s.WaitFallbacksForTest()
		watchFailed.Add(f)
		timerWakes.Add(w)
	})
	holders := make([]*lock.Mutex, keys)
	for k := range holders {
		holders[k] = lock.NewMutex(b, fmt.Sprintf("shared/%d", k), lock.WithTTL(ttl))
		if _, err := holders[k].Lock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var (
		inside [keys]atomic.Int32
		mu     sync.Mutex
		tokens [keys][]uint64
		wg     sync.WaitGroup
		errs   = make(chan error, keys*perKey)
	)
	for i := range keys * perKey {
		k := i % keys
		m := lock.NewMutex(b, fmt.Sprintf("shared/%d", k), lock.WithTTL(ttl), granted)
		wg.Go(func() {
			token, err := m.Lock(ctx)
			if err != nil {
				errs <- fmt.Errorf("waiter %d: %w", i, err)
				return
			}
			if c := inside[k].Add(1); c != 1 {
				errs <- fmt.Errorf("key %d: %d holders at once", k, c)
			}
			mu.Lock()
			tokens[k] = append(tokens[k], token)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			inside[k].Add(-1)
			if err := m.Unlock(ctx); err != nil {
				errs <- fmt.Errorf("waiter %d: unlock: %w", i, err)
			}
		})
	}
	waitWaiters(t, n, keys*perKey)
	for _, h := range holders {
		if err := h.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for k := range tokens {
		if len(tokens[k]) != perKey {
			t.Errorf("key %d: %d grants, want %d", k, len(tokens[k]), perKey)
		}
		for i := 1; i < len(tokens[k]); i++ {
			if tokens[k][i] <= tokens[k][i-1] {
				t.Errorf("key %d: token %d after %d", k, tokens[k][i], tokens[k][i-1])
			}
		}
	}
	if f, w := watchFailed.Load(), timerWakes.Load(); f != 0 || w != 0 {
		t.Errorf("%d watch creations failed and %d waits ended by the fallback timer, want 0: waiters fell back to re-checks", f, w)
	}
	if max := mon.end(); max > maxWatches {
		t.Errorf("the locks stream had %d consumers, want at most %d (%d keys + %d)", max, maxWatches, keys, consumerSlack)
	} else {
		t.Logf("at most %d consumers for %d waiters on %d keys", max, keys*perKey, keys)
	}
	took := mon.waitConsumers(ctx, t, 0, 5*time.Second)
	t.Logf("no consumer %v after the last waiter returned", took.Round(time.Millisecond))
	if w, r := lock.SharedWatchesForTest(n); w != 0 || r != 0 {
		t.Errorf("%d shared watches with %d waiters left", w, r)
	}
}

// TestElectionWatchesShared checks the same for elections: candidates
// waiting in Campaign and an observer share one consumer on the elections
// stream, which is deleted within 5s once they are done.
func TestElectionWatchesShared(t *testing.T) {
	const cands = 6
	n := openNode(t)
	b := lock.FromNode(n)
	ctx := within(t, 60*time.Second)
	mon := monitorConsumers(ctx, t, n.JetStream(), "KV_"+coord.BucketElections)
	defer mon.end()

	leader := lock.NewElection(b, "shared-election", lock.WithTTL(10*time.Second))
	if _, err := leader.Campaign(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	octx, ostop := context.WithCancel(ctx)
	defer ostop()
	updates := leader.Observe(octx)
	if l := <-updates; l.Value != "first" {
		t.Fatalf("observed %q, want first", l.Value)
	}
	var wg sync.WaitGroup
	errs := make(chan error, cands)
	for i := range cands {
		e := lock.NewElection(b, "shared-election", lock.WithTTL(10*time.Second))
		wg.Go(func() {
			if _, err := e.Campaign(ctx, fmt.Sprint("cand-", i)); err != nil {
				errs <- err
				return
			}
			if err := e.Resign(ctx); err != nil {
				errs <- err
			}
		})
	}
	waitWaiters(t, n, cands+1)
	if err := leader.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ostop()
	for range updates { // closed once Observe stopped its watch
	}
	if max := mon.end(); max > 1+consumerSlack {
		t.Errorf("the elections stream had %d consumers, want at most %d", max, 1+consumerSlack)
	} else {
		t.Logf("at most %d consumers for %d candidates and an observer", max, cands)
	}
	took := mon.waitConsumers(ctx, t, 0, 5*time.Second)
	t.Logf("no consumer %v after they were done", took.Round(time.Millisecond))
}

// TestSharedWatchOutlivesLeavingWaiter checks that a waiter that gives up
// (its ctx ends) leaves the shared watch to the others: the one still
// waiting is woken by the release through the same watch, not by its
// fallback timer (the holder's lease expiry, 10s away).
func TestSharedWatchOutlivesLeavingWaiter(t *testing.T) {
	n := openNode(t)
	b := lock.FromNode(n)
	ctx := within(t, 30*time.Second)
	var timerWakes atomic.Int64
	granted := lock.WithGrantedHookForTest(func(s *lock.Session) {
		_, w := s.WaitFallbacksForTest()
		timerWakes.Add(w)
	})
	holder := lock.NewMutex(b, "outlive", lock.WithTTL(10*time.Second))
	if _, err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	quitter := lock.NewMutex(b, "outlive", lock.WithTTL(10*time.Second))
	stayer := lock.NewMutex(b, "outlive", lock.WithTTL(10*time.Second), granted)
	qctx, quit := context.WithCancel(ctx)
	quitErr := make(chan error, 1)
	go func() {
		_, err := quitter.Lock(qctx)
		quitErr <- err
	}()
	waitWaiters(t, n, 1)
	got := make(chan error, 1)
	go func() {
		_, err := stayer.Lock(ctx)
		got <- err
	}()
	waitWaiters(t, n, 2)
	quit()
	if err := <-quitErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock after its ctx ended: %v, want context.Canceled", err)
	}
	if w, r := lock.SharedWatchesForTest(n); w != 1 || r != 1 {
		t.Fatalf("%d shared watches with %d waiters after one left, want 1 with 1", w, r)
	}
	released := time.Now()
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(released); d > 3*time.Second || timerWakes.Load() != 0 {
		t.Fatalf("waiter took %v after the release, %d timer wakes: not woken by the shared watch", d, timerWakes.Load())
	}
	if err := stayer.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if w, r := lock.SharedWatchesForTest(n); w != 0 || r != 0 {
		t.Fatalf("%d shared watches with %d waiters after all left", w, r)
	}
}
