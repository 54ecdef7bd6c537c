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
		if err := b.Allow(); err != nil {
			return err
		}
		b.Done(success)
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
	if b.Allow() != nil || b.Allow() != nil {
		t.Fatal("probes refused")
	}
	if !errors.Is(b.Allow(), ErrOpen) {
		t.Fatal("third concurrent probe allowed")
	}
	b.Done(true)
	b.Done(false) // a failed probe reopens
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
	for i := 0; i < 3; i++ {
		b.Allow()
		b.Done(false)
	}
	c.advance(11 * time.Second) // the failures leave the window
	for i := 0; i < 3; i++ {
		b.Allow()
		b.Done(true)
	}
	b.Allow()
	b.Done(false)
	if b.State() != Closed {
		t.Fatalf("state %v: old failures were counted", b.State())
	}
}

func BenchmarkAllowDone(b *testing.B) {
	br := New(Config{FailureRatio: 0.5, MinRequests: 20, Window: 10 * time.Second, OpenFor: time.Second})
	b.ReportAllocs()
	for b.Loop() {
		if br.Allow() == nil {
			br.Done(true)
		}
	}
}
