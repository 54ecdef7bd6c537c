package breaker

import (
	"errors"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestOpensHalfOpensCloses(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	b := New(Config{FailureRatio: 0.5, MinRequests: 4, Window: 10 * time.Second, OpenFor: 5 * time.Second, HalfOpenProbes: 2, Now: c.now})
	call := func(success bool) error {
		tk, err := b.Allow()
		if err != nil {
			return err
		}
		b.Done(tk, success)
		return nil
	}
	// 3 failures are below MinRequests; with a success the window holds 4
	// outcomes, 3 failed: past the 0.5 ratio.
	for i := 0; i < 3; i++ {
		_ = call(false)
	}
	if b.State() != Closed {
		t.Fatal("opened before MinRequests")
	}
	_ = call(true)
	if b.State() != Open {
		t.Fatalf("state %v after 3 of 4 failed, want open", b.State())
	}
	if err := call(true); !errors.Is(err, ErrOpen) {
		t.Fatalf("open breaker allowed a call: %v", err)
	}
	c.advance(5 * time.Second)
	if b.State() != HalfOpen {
		t.Fatalf("state %v after OpenFor, want half-open", b.State())
	}
	// Two probes at a time; a third is refused.
	p1, err1 := b.Allow()
	p2, err2 := b.Allow()
	if err1 != nil || err2 != nil {
		t.Fatal("probes refused")
	}
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatal("third concurrent probe allowed")
	}
	b.Done(p1, true)
	b.Done(p2, false) // a failed probe reopens
	if b.State() != Open {
		t.Fatalf("state %v after a failed probe, want open", b.State())
	}
	c.advance(5 * time.Second)
	_ = call(true)
	_ = call(true)
	if b.State() != Closed {
		t.Fatalf("state %v after 2 good probes, want closed", b.State())
	}
	// The window starts empty after closing.
	_ = call(false)
	if b.State() != Closed {
		t.Fatal("reopened on one failure after closing")
	}
}

func TestWindowForgetsOldFailures(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	b := New(Config{FailureRatio: 0.5, MinRequests: 4, Window: 10 * time.Second, OpenFor: time.Second, Now: c.now})
	call := func(success bool) {
		tk, _ := b.Allow()
		b.Done(tk, success)
	}
	for i := 0; i < 3; i++ {
		call(false)
	}
	c.advance(11 * time.Second) // the failures leave the window
	for i := 0; i < 3; i++ {
		call(true)
	}
	call(false)
	if b.State() != Closed {
		t.Fatalf("state %v: old failures were counted", b.State())
	}
}

func BenchmarkAllowDone(b *testing.B) {
	br := New(Config{FailureRatio: 0.5, MinRequests: 20, Window: 10 * time.Second, OpenFor: time.Second})
	b.ReportAllocs()
	for b.Loop() {
		if tk, err := br.Allow(); err == nil {
			br.Done(tk, true)
		}
	}
}

// TestStaleOutcomesAreNotProbes checks that only calls admitted in the
// current half-open period are probes: a call admitted while closed, or by
// an earlier half-open period, neither closes nor reopens the breaker when
// it ends.
func TestStaleOutcomesAreNotProbes(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	b := New(Config{FailureRatio: 0.5, MinRequests: 2, Window: 10 * time.Second, OpenFor: 5 * time.Second, HalfOpenProbes: 2, Now: c.now})
	allow := func() Ticket {
		t.Helper()
		tk, err := b.Allow()
		if err != nil {
			t.Fatalf("call refused in state %v: %v", b.State(), err)
		}
		return tk
	}
	call := func(success bool) { b.Done(allow(), success) }
	// Three slow calls admitted while closed, still running.
	slow := []Ticket{allow(), allow(), allow()}
	call(false)
	call(false)
	if b.State() != Open {
		t.Fatalf("state %v after 2 of 2 failed, want open", b.State())
	}
	c.advance(5 * time.Second)
	b.Done(slow[0], true)
	b.Done(slow[1], true)
	if got := b.State(); got != HalfOpen {
		t.Fatalf("state %v after 2 calls admitted while closed succeeded, want half-open: they are not probes", got)
	}
	b.Done(slow[2], false)
	if got := b.State(); got != HalfOpen {
		t.Fatalf("state %v after a call admitted while closed failed, want half-open: it is not a probe", got)
	}
	// Both probe slots are free. One probe fails late, after the other
	// reopened the breaker and it became half-open again.
	early, late := allow(), allow()
	b.Done(early, false) // reopens
	c.advance(5 * time.Second)
	call(true)         // the new period's first probe
	b.Done(late, true) // the earlier period's other probe
	if got := b.State(); got != HalfOpen {
		t.Fatalf("state %v after one probe of the current period succeeded, want half-open until 2 do", got)
	}
	call(true)
	if got := b.State(); got != Closed {
		t.Fatalf("state %v after 2 probes succeeded, want closed", got)
	}
}

// TestWindowHoldsEveryBucket checks, for windows whose bucket width does
// not divide a second, that outcomes spread over most of the window all
// count, and that they all leave it once the window has passed.
func TestWindowHoldsEveryBucket(t *testing.T) {
	for _, window := range []time.Duration{7 * time.Second, 10 * time.Second, 11 * time.Second} {
		t.Run(window.String(), func(t *testing.T) {
			const n = 20
			c := &clock{t: time.Unix(1000, 0)}
			b := New(Config{FailureRatio: 1, MinRequests: n, Window: window, OpenFor: time.Hour, Now: c.now})
			fail := func() {
				tk, err := b.Allow()
				if err != nil {
					t.Fatal(err)
				}
				b.Done(tk, false)
			}
			step := window * 8 / 10 / n // n outcomes span under 80% of the window
			for i := range n - 1 {
				if i > 0 {
					c.advance(step)
				}
				fail()
			}
			if b.State() != Closed {
				t.Fatalf("opened before %d outcomes", n)
			}
			c.advance(step)
			fail()
			if got := b.State(); got != Open {
				t.Fatalf("state %v after %d failures within %v, want open: outcomes were lost", got, n, window)
			}

			// The same n-1 failures, then one after a whole window: the
			// earlier ones no longer count.
			b = New(Config{FailureRatio: 1, MinRequests: n, Window: window, OpenFor: time.Hour, Now: c.now})
			for range n - 1 {
				c.advance(step)
				fail()
			}
			c.advance(window + window/10)
			fail()
			if got := b.State(); got != Closed {
				t.Fatalf("state %v: failures older than the window were counted", got)
			}
		})
	}
}

// TestAbandonFreesProbeSlot checks that a probe that ends without an
// outcome neither closes nor reopens the breaker, and frees its slot.
func TestAbandonFreesProbeSlot(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	b := New(Config{FailureRatio: 1, MinRequests: 1, OpenFor: 5 * time.Second, HalfOpenProbes: 1, Now: c.now})
	tk, _ := b.Allow()
	b.Done(tk, false)
	c.advance(5 * time.Second)
	probe, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatal("second concurrent probe allowed")
	}
	b.Abandon(probe)
	if got := b.State(); got != HalfOpen {
		t.Fatalf("state %v after an abandoned probe, want half-open", got)
	}
	if probe, err = b.Allow(); err != nil {
		t.Fatalf("abandoned probe kept its slot: %v", err)
	}
	b.Done(probe, true)
	if got := b.State(); got != Closed {
		t.Fatalf("state %v after a good probe, want closed", got)
	}
}

// TestFailuresCountsTheStreak: Failures counts failed outcomes in a row,
// keeps the streak that opened the breaker while it is open (refused calls
// report nothing), and a success resets it.
func TestFailuresCountsTheStreak(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	b := New(Config{FailureRatio: 0.75, MinRequests: 5, Window: 10 * time.Second, OpenFor: 5 * time.Second, Now: c.now})
	outcome := func(success bool) {
		t.Helper()
		tk, err := b.Allow()
		if err != nil {
			t.Fatal(err)
		}
		b.Done(tk, success)
	}
	outcome(false)
	outcome(true)
	if n := b.Failures(); n != 0 {
		t.Fatalf("Failures %d after a success, want 0", n)
	}
	for range 3 {
		outcome(false)
	}
	if b.State() != Open || b.Failures() != 3 {
		t.Fatalf("state %v, Failures %d; want open, 3", b.State(), b.Failures())
	}
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) || b.Failures() != 3 {
		t.Fatalf("Allow %v, Failures %d while open", err, b.Failures())
	}
	c.advance(5 * time.Second)
	outcome(true) // the probe
	if b.State() != Closed || b.Failures() != 0 {
		t.Fatalf("after a good probe: state %v, Failures %d", b.State(), b.Failures())
	}
}
