package lock_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord/lock"
)

func TestMutexBasics(t *testing.T) {
	n := openNode(t)
	b := lock.FromNode(n)
	ctx := within(t, 30*time.Second)
	a := lock.NewMutex(b, "orders/42", lock.WithTTL(5*time.Second))
	c := lock.NewMutex(b, "orders/42", lock.WithTTL(5*time.Second))

	t1, err := a.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if t1 == 0 || a.Token() != t1 {
		t.Fatalf("token %d, Token() %d", t1, a.Token())
	}
	if d := time.Until(a.Deadline()); d < 4*time.Second || d > 5*time.Second {
		t.Fatalf("deadline in %v, want about 5s", d)
	}
	if err := a.Valid(); err != nil {
		t.Fatalf("Valid while held: %v", err)
	}
	if err := c.Valid(); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("Valid without a grant: %v, want ErrNotHeld", err)
	}
	if _, err := a.Lock(ctx); !errors.Is(err, lock.ErrAlreadyHeld) {
		t.Fatalf("second Lock: %v, want ErrAlreadyHeld", err)
	}
	if _, err := c.TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock of a held lock: %v, want ErrLocked", err)
	}
	if err := c.Unlock(ctx); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("non-holder Unlock: %v, want ErrNotHeld", err)
	}
	// The non-holder's Unlock changed nothing.
	if _, err := c.TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock after a non-holder's Unlock: %v, want ErrLocked", err)
	}
	select {
	case <-a.Done():
		t.Fatal("Done closed while held")
	default:
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Done():
	default:
		t.Fatal("Done not closed after Unlock")
	}
	if err := a.Valid(); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("Valid after Unlock: %v, want ErrNotHeld", err)
	}
	if err := a.Unlock(ctx); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("second Unlock: %v, want ErrNotHeld", err)
	}
	t2, err := c.TryLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if t2 <= t1 {
		t.Fatalf("token %d after %d: not increasing", t2, t1)
	}
	if err := c.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// Right after a release the key holds a release marker; after the marker
	// expires it is empty. Both are free.
	t3, err := a.TryLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	t4, err := c.TryLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !(t1 < t2 && t2 < t3 && t3 < t4) {
		t.Fatalf("tokens %d %d %d %d not increasing", t1, t2, t3, t4)
	}
	if err := c.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestMutexInvalid(t *testing.T) {
	n := openNode(t)
	ctx := within(t, 10*time.Second)
	for _, name := range []string{"", "a b", "a..b", ".a", "a.", "a*", "a>", string(make([]byte, lock.MaxNameLen+1))} {
		if _, err := lock.NewMutex(lock.FromNode(n), name).TryLock(ctx); !errors.Is(err, lock.ErrInvalidName) {
			t.Errorf("name %q: %v, want ErrInvalidName", name, err)
		}
	}
	for _, ttl := range []time.Duration{0, 500 * time.Millisecond, 1500 * time.Millisecond} {
		if _, err := lock.NewMutex(lock.FromNode(n), "x", lock.WithTTL(ttl)).TryLock(ctx); !errors.Is(err, lock.ErrInvalidTTL) {
			t.Errorf("TTL %v: %v, want ErrInvalidTTL", ttl, err)
		}
		if _, err := lock.NewSession(ctx, lock.FromNode(n), lock.WithTTL(ttl)); !errors.Is(err, lock.ErrInvalidTTL) {
			t.Errorf("session TTL %v: %v, want ErrInvalidTTL", ttl, err)
		}
	}
}

// TestMutexCounter has goroutines, each its own contender, increment a
// plain variable under the lock with a yield between read and write: no
// increment is lost, and tokens increase in grant order.
func TestMutexCounter(t *testing.T) {
	n := openNode(t)
	ctx := within(t, 60*time.Second)
	const workers, iterations = 8, 25
	var (
		counter int      // guarded by the distributed lock only
		tokens  []uint64 // appended under the distributed lock only
		wg      sync.WaitGroup
		errs    = make(chan error, workers)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu := lock.NewMutex(lock.FromNode(n), "counter", lock.WithTTL(5*time.Second))
			for range iterations {
				token, err := mu.Lock(ctx)
				if err != nil {
					errs <- err
					return
				}
				v := counter
				time.Sleep(100 * time.Microsecond)
				counter = v + 1
				tokens = append(tokens, token)
				if err := mu.Unlock(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if counter != workers*iterations {
		t.Fatalf("counter %d, want %d: lost updates", counter, workers*iterations)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Fatalf("grant %d has token %d after %d", i, tokens[i], tokens[i-1])
		}
	}
}

// TestMutexWaiterWokenByWatch checks that a waiter is woken by the release
// (a watch event), long before its fallback timer (the holder's lease
// expiry, 10s away).
func TestMutexWaiterWokenByWatch(t *testing.T) {
	n := openNode(t)
	ctx := within(t, 30*time.Second)
	a := lock.NewMutex(lock.FromNode(n), "wake", lock.WithTTL(10*time.Second))
	c := lock.NewMutex(lock.FromNode(n), "wake", lock.WithTTL(10*time.Second))
	if _, err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := c.Lock(ctx)
		got <- err
	}()
	time.Sleep(300 * time.Millisecond) // let c start waiting
	released := time.Now()
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(released); d > 3*time.Second {
		t.Fatalf("waiter took %v after the release: not woken by the watch", d)
	}
	if err := c.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestMutexLockHonoursContext(t *testing.T) {
	n := openNode(t)
	ctx := within(t, 30*time.Second)
	a := lock.NewMutex(lock.FromNode(n), "ctx", lock.WithTTL(5*time.Second))
	c := lock.NewMutex(lock.FromNode(n), "ctx", lock.WithTTL(5*time.Second))
	if _, err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	short := within(t, 300*time.Millisecond)
	if _, err := c.Lock(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with an ending context: %v", err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSharedSession(t *testing.T) {
	n := openNode(t)
	ctx := within(t, 30*time.Second)
	s, err := lock.NewSession(ctx, lock.FromNode(n), lock.WithTTL(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	a := lock.NewMutex(lock.FromNode(n), "s1", lock.WithSession(s))
	c := lock.NewMutex(lock.FromNode(n), "s2", lock.WithSession(s))
	if _, err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	// Held past several TTLs by the keepalive.
	time.Sleep(4 * time.Second)
	other := lock.NewMutex(lock.FromNode(n), "s1", lock.WithTTL(1*time.Second))
	if _, err := other.TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock of a kept lock: %v", err)
	}
	if s.Err() != nil || s.Deadline().IsZero() {
		t.Fatalf("session err %v deadline %v", s.Err(), s.Deadline())
	}
	// Close revokes both keys at once.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	<-s.Done()
	if !errors.Is(s.Err(), lock.ErrSessionClosed) {
		t.Fatalf("Err after Close: %v", s.Err())
	}
	<-a.Done()
	<-c.Done()
	if _, err := other.TryLock(ctx); err != nil {
		t.Fatalf("TryLock after Close revoked: %v", err)
	}
	if err := other.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("Unlock after the session closed: %v", err)
	}
	if _, err := a.Lock(ctx); !errors.Is(err, lock.ErrSessionClosed) {
		t.Fatalf("Lock on a closed session: %v", err)
	}
}
