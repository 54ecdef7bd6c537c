package ratelimit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a manually advanced clock.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() int64              { return c.ns.Load() }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func mustNew(t *testing.T, cfg Config, c Clock) *Limiter {
	t.Helper()
	l, err := New(cfg, c)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// admitted counts the calls admitted out of n at the current instant.
func admitted(l *Limiter, n int) int {
	count := 0
	for i := 0; i < n; i++ {
		if ok, _ := l.Allow(); ok {
			count++
		}
	}
	return count
}

func TestTokenBucketExact(t *testing.T) {
	c := &fakeClock{}
	l := mustNew(t, Config{Algorithm: TokenBucket, Rate: 10, Per: time.Second, Burst: 5}, c)
	if got := admitted(l, 100); got != 5 {
		t.Fatalf("burst: admitted %d, want 5", got)
	}
	ok, retry := l.Allow()
	if ok || retry != 100*time.Millisecond {
		t.Fatalf("after burst: %v %v, want rejected with 100ms", ok, retry)
	}
	c.Advance(99 * time.Millisecond)
	if got := admitted(l, 10); got != 0 {
		t.Fatalf("at 99ms: admitted %d, want 0", got)
	}
	c.Advance(time.Millisecond)
	if got := admitted(l, 10); got != 1 {
		t.Fatalf("at 100ms: admitted %d, want 1", got)
	}
	// Over 1s of steady demand: exactly rate more.
	total := 0
	for i := 0; i < 100; i++ {
		c.Advance(10 * time.Millisecond)
		total += admitted(l, 3)
	}
	if total != 10 {
		t.Fatalf("over 1s: admitted %d, want 10", total)
	}
	// Idle refills to burst, never beyond.
	c.Advance(time.Hour)
	if got := admitted(l, 100); got != 5 {
		t.Fatalf("after idle: admitted %d, want 5", got)
	}
}

func TestSlidingWindowExact(t *testing.T) {
	c := &fakeClock{}
	l := mustNew(t, Config{Algorithm: SlidingWindow, Rate: 10, Per: time.Second}, c)
	if got := admitted(l, 100); got != 10 {
		t.Fatalf("first window: admitted %d, want 10", got)
	}
	ok, retry := l.Allow()
	if ok || retry <= 0 || retry > time.Second+100*time.Millisecond {
		t.Fatalf("full window: %v %v", ok, retry)
	}
	// Half way into the next window the previous window weighs 0.5: 10*0.5 = 5
	// estimated, so 5 more fit.
	c.Advance(1500 * time.Millisecond)
	if got := admitted(l, 100); got != 5 {
		t.Fatalf("at 1.5s: admitted %d, want 5", got)
	}
	// The retry delay is exact: nothing fits just before it, one call at it.
	_, retry = l.Allow()
	c.Advance(retry - time.Nanosecond)
	if got := admitted(l, 1); got != 0 {
		t.Fatalf("just before retry delay %v: admitted", retry)
	}
	c.Advance(time.Nanosecond)
	if got := admitted(l, 1); got != 1 {
		t.Fatalf("at retry delay %v: not admitted", retry)
	}
	// Two windows of silence forget everything.
	c.Advance(2 * time.Second)
	if got := admitted(l, 100); got != 10 {
		t.Fatalf("after idle: admitted %d, want 10", got)
	}
}

func TestSlidingWindowRetryAfterFullWindow(t *testing.T) {
	c := &fakeClock{}
	l := mustNew(t, Config{Algorithm: SlidingWindow, Rate: 4, Per: time.Second}, c)
	admitted(l, 4)
	c.Advance(250 * time.Millisecond)
	_, retry := l.Allow()
	c.Advance(retry - time.Nanosecond)
	if admitted(l, 1) != 0 {
		t.Fatalf("admitted before the retry delay %v", retry)
	}
	c.Advance(time.Nanosecond)
	if admitted(l, 1) != 1 {
		t.Fatalf("not admitted at the retry delay %v", retry)
	}
}

func TestLeakyBucketExact(t *testing.T) {
	c := &fakeClock{}
	l := mustNew(t, Config{Algorithm: LeakyBucket, Rate: 10, Per: time.Second, Burst: 3}, c)
	// Allow admits only a call that need not wait.
	if got := admitted(l, 10); got != 1 {
		t.Fatalf("Allow: admitted %d, want 1", got)
	}
	c.Advance(100 * time.Millisecond)
	// With a cancelled context nothing waits; check queue accounting by the
	// errors: slot now is free (wait 0), then 3 may queue, the 5th is rejected.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	var queued, rejected int
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		l.mu.Lock()
		wait := max(l.tat, c.Now()) - c.Now()
		l.mu.Unlock()
		if wait > l.tau {
			err := l.Wait(ctx)
			var le *LimitedError
			if !errors.As(err, &le) || le.RetryAfter != time.Duration(wait-l.tau) {
				t.Fatalf("call %d: %v, want LimitedError after %v", i, err, time.Duration(wait-l.tau))
			}
			rejected++
			continue
		}
		if wait == 0 {
			if err := l.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			continue
		}
		queued++
		from := l.tatLocked()
		wg.Add(1)
		go func() { defer wg.Done(); _ = l.Wait(ctx) }()
		// Wait until it has reserved its slot (tat moves) before the next
		// call reads tat. This used to sleep 1ms, which a loaded machine
		// may not give the goroutine: the next call then computes its wait
		// from a stale tat and the counts come out wrong.
		awaitReservation(t, l, from)
	}
	if queued != 3 || rejected != 1 {
		t.Fatalf("queued %d rejected %d, want 3 and 1", queued, rejected)
	}
	cancel()
	wg.Wait()
}

// tatLocked reads l.tat under l.mu.
func (l *Limiter) tatLocked() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tat
}

// awaitReservation waits, within 10s, until l's tat has moved from from
// (read before the Wait started): a Wait started on another goroutine has
// reserved its slot.
func awaitReservation(t *testing.T, l *Limiter, from int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 100000 && time.Now().Before(deadline); i++ {
		if l.tatLocked() != from {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
	t.Fatal("a queued Wait did not reserve its slot within 10s")
}

func TestLeakyBucketPacesRealTime(t *testing.T) {
	l := mustNew(t, Config{Algorithm: LeakyBucket, Rate: 50, Per: time.Second, Burst: 10}, nil)
	start := time.Now()
	for i := 0; i < 6; i++ {
		if err := l.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// 6 calls at 20ms spacing: the last leaves no earlier than 100ms.
	if el := time.Since(start); el < 95*time.Millisecond {
		t.Fatalf("6 paced calls took %v, want >= 100ms", el)
	}
}

// TestLeakyBucketDeadline checks that a call whose deadline ends before
// its slot is rejected at once, without taking the slot. The clock is fake
// and stands still: this used to run on the real clock right after paced
// calls, where a timer that fired over 20ms late (a loaded machine) left
// the next slot already due, and the call was admitted.
func TestLeakyBucketDeadline(t *testing.T) {
	c := &fakeClock{}
	l := mustNew(t, Config{Algorithm: LeakyBucket, Rate: 50, Per: time.Second, Burst: 10}, c)
	if err := l.Wait(context.Background()); err != nil { // the free slot at 0
		t.Fatal(err)
	}
	// The next slot is 20ms away on the fake clock; the deadline, 1ms.
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	var le *LimitedError
	if err := l.Wait(ctx); !errors.As(err, &le) || le.RetryAfter != 20*time.Millisecond {
		t.Fatalf("wait past deadline: %v, want LimitedError after 20ms", err)
	}
	// The rejected call took no slot: at 20ms the next call need not wait
	// (after a leaked slot it would have to wait until 40ms).
	c.Advance(20 * time.Millisecond)
	if ok, retry := l.Allow(); !ok {
		t.Fatalf("the slot after a rejected call: not free, retry after %v", retry)
	}
}

// TestLeakyBucketEndedContext: a call whose context has already ended
// (cancelled, or its deadline passed) gets that error and takes no slot,
// even when a slot is free.
func TestLeakyBucketEndedContext(t *testing.T) {
	c := &fakeClock{}
	l := mustNew(t, Config{Algorithm: LeakyBucket, Rate: 50, Per: time.Second, Burst: 10}, c)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for ctx, want := range map[context.Context]error{cancelled: context.Canceled, expired: context.DeadlineExceeded} {
		if err := l.Wait(ctx); !errors.Is(err, want) {
			t.Fatalf("Wait with an ended context: %v, want %v", err, want)
		}
	}
	if ok, retry := l.Allow(); !ok { // the slot at 0 is still free
		t.Fatalf("the free slot was taken by ended calls: retry after %v", retry)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []Config{
		{Algorithm: 0, Rate: 1, Per: time.Second, Burst: 1},
		{Algorithm: TokenBucket, Rate: 0, Per: time.Second, Burst: 1},
		{Algorithm: TokenBucket, Rate: 1, Per: 0, Burst: 1},
		{Algorithm: TokenBucket, Rate: 1, Per: time.Second, Burst: 0},
		{Algorithm: LeakyBucket, Rate: 1, Per: time.Second, Burst: 0},
	} {
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	if _, err := New(Config{Algorithm: SlidingWindow, Rate: 1, Per: time.Second}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestOverloadRealClock offers about 10x the rate for a while with the real
// clock and checks the admitted count stays within rate*elapsed + burst.
func TestOverloadRealClock(t *testing.T) {
	for _, alg := range []Algorithm{TokenBucket, SlidingWindow} {
		l := mustNew(t, Config{Algorithm: alg, Rate: 100, Per: time.Second, Burst: 20}, nil)
		start := time.Now()
		var got int
		for time.Since(start) < 300*time.Millisecond {
			if ok, _ := l.Allow(); ok {
				got++
			}
			time.Sleep(time.Millisecond / 2) // ~2000 offers/s: 20x the rate
		}
		el := time.Since(start).Seconds()
		limit := int(100*el) + 20 + 1
		if alg == SlidingWindow {
			limit = int(100*el) + 100 // at most one window's worth over
		}
		if got > limit || got < int(100*el/2) {
			t.Errorf("%v: admitted %d in %.2fs, want between %d and %d", alg, got, el, int(100*el/2), limit)
		}
	}
}

func TestKeyedEvictsIdleKeysFirst(t *testing.T) {
	c := &fakeClock{}
	k, err := NewKeyed(Config{Algorithm: TokenBucket, Rate: 10, Per: time.Second, Burst: 2}, c, 4)
	if err != nil {
		t.Fatal(err)
	}
	a := k.Limiter("a")
	if got := admitted(a, 5); got != 2 {
		t.Fatalf("a admitted %d", got)
	}
	for _, key := range []string{"b", "c", "d"} {
		k.Limiter(key)
	}
	c.Advance(time.Second) // b, c, d and a are idle long enough to be full again
	k.Limiter("a")         // a is active again
	k.Limiter("e")         // full: evicts the idle b, c, d
	if k.Len() != 2 {
		t.Fatalf("after eviction: %d keys, want 2", k.Len())
	}
	if k.Limiter("a") != a {
		t.Fatal("active key a was evicted")
	}
	// A flood of distinct active keys keeps memory bounded.
	for i := 0; i < 100; i++ {
		k.Limiter(string(rune('A' + i)))
		if k.Len() > 4 {
			t.Fatalf("%d keys tracked, max 4", k.Len())
		}
	}
}

// TestKeyedLongKeys checks that long keys (a hostile header, say) are kept
// as fixed-size digests: memory is bounded by bytes, and each long key
// still has its own limiter.
func TestKeyedLongKeys(t *testing.T) {
	c := &fakeClock{}
	k, err := NewKeyed(Config{Algorithm: TokenBucket, Rate: 10, Per: time.Second, Burst: 2}, c, 1000)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 1<<20)
	a, b := k.Limiter(long+"a"), k.Limiter(long+"b")
	if a == b {
		t.Fatal("two distinct long keys share a limiter")
	}
	if k.Limiter(long+"a") != a {
		t.Fatal("a long key did not find its limiter again")
	}
	if got := admitted(a, 5); got != 2 {
		t.Fatalf("long key admitted %d, want its burst of 2", got)
	}
	var stored int
	k.mu.Lock()
	for key := range k.m {
		stored += len(key)
	}
	k.mu.Unlock()
	if stored > 2*MaxKeyBytes {
		t.Fatalf("the map holds %d bytes of keys for two 1 MiB keys", stored)
	}
}

// TestStaleClockReadingAdmits: a caller whose clock reading is older than
// the last decision (descheduled between reading the clock and taking the
// lock) decides at the last decision's time, so the limit still admits
// what it should. Without that, the second call below, made at the same
// moment as the first into a bucket of two, was refused: its reading is
// half a second behind the first call's.
func TestStaleClockReadingAdmits(t *testing.T) {
	c := &fakeClock{}
	c.Advance(10 * time.Second)
	l := mustNew(t, Config{Algorithm: TokenBucket, Rate: 1, Per: time.Second, Burst: 2}, c)
	if ok, _ := l.Allow(); !ok {
		t.Fatal("first call into a full bucket refused")
	}
	c.Advance(-500 * time.Millisecond) // the next caller's reading is stale
	if ok, retry := l.Allow(); !ok {
		t.Fatalf("second call of a burst of 2 refused (retry after %v) for a stale clock reading", retry)
	}
	if ok, _ := l.Allow(); ok {
		t.Fatal("a third call within the burst of 2 admitted")
	}
}
