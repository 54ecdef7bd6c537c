package breaker

import (
	"errors"
	"sync"
	"time"
)

// ErrOpen is returned by Allow while the breaker is open, or half-open with
// every probe slot taken.
var ErrOpen = errors.New("breaker: circuit open")

// State is a breaker's state.
type State uint8

// The states.
const (
	Closed State = iota
	Open
	HalfOpen
)

// String returns the state's name.
func (s State) String() string {
	return [...]string{"closed", "open", "half-open"}[s]
}

// Config configures a Breaker.
type Config struct {
	// FailureRatio in (0, 1] opens the breaker.
	FailureRatio float64
	// MinRequests is the number of outcomes the window must hold first.
	MinRequests int
	// Window is the rolling window.
	Window time.Duration
	// OpenFor is how long the breaker stays open.
	OpenFor time.Duration
	// HalfOpenProbes is the number of successful probes that close it.
	HalfOpenProbes int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

const buckets = 10

// Breaker is one circuit breaker.
type Breaker struct {
	cfg Config

	mu        sync.Mutex
	state     State
	openUntil time.Time
	probes    int // half-open: probes in flight
	successes int // half-open: successful probes
	// Rolling window: counts per bucket, bucket start times.
	ok, fail [buckets]int
	start    [buckets]time.Time
}

// New returns a closed Breaker.
func New(cfg Config) *Breaker {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.MinRequests = max(cfg.MinRequests, 1)
	cfg.HalfOpenProbes = max(cfg.HalfOpenProbes, 1)
	if cfg.Window <= 0 {
		cfg.Window = 10 * time.Second
	}
	return &Breaker{cfg: cfg}
}

// State returns the current state.
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tickLocked(b.cfg.Now())
	return b.state
}

// Allow asks to make a call. It returns ErrOpen to fail fast; otherwise the
// caller must report the outcome with Done exactly once.
func (b *Breaker) Allow() error {
	now := b.cfg.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tickLocked(now)
	switch b.state {
	case Open:
		return ErrOpen
	case HalfOpen:
		if b.probes >= b.cfg.HalfOpenProbes-b.successes {
			return ErrOpen
		}
		b.probes++
	}
	return nil
}

// Done reports the outcome of an allowed call.
func (b *Breaker) Done(success bool) {
	now := b.cfg.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tickLocked(now)
	switch b.state {
	case HalfOpen:
		b.probes = max(b.probes-1, 0)
		if !success {
			b.openLocked(now)
			return
		}
		b.successes++
		if b.successes >= b.cfg.HalfOpenProbes {
			b.state = Closed
			b.ok, b.fail = [buckets]int{}, [buckets]int{}
		}
		return
	case Open:
		return // a call allowed before the breaker opened
	}
	i := b.bucketLocked(now)
	if success {
		b.ok[i]++
	} else {
		b.fail[i]++
	}
	var ok, fail int
	for j := range buckets {
		if now.Sub(b.start[j]) < b.cfg.Window {
			ok += b.ok[j]
			fail += b.fail[j]
		}
	}
	if total := ok + fail; total >= b.cfg.MinRequests && float64(fail) >= b.cfg.FailureRatio*float64(total) {
		b.openLocked(now)
	}
}

func (b *Breaker) openLocked(now time.Time) {
	b.state = Open
	b.openUntil = now.Add(b.cfg.OpenFor)
	b.probes, b.successes = 0, 0
}

// tickLocked moves an open breaker to half-open once OpenFor has passed.
func (b *Breaker) tickLocked(now time.Time) {
	if b.state == Open && !now.Before(b.openUntil) {
		b.state = HalfOpen
		b.probes, b.successes = 0, 0
	}
}

// bucketLocked returns the index of now's bucket, clearing it if stale.
func (b *Breaker) bucketLocked(now time.Time) int {
	width := b.cfg.Window / buckets
	if width <= 0 {
		width = 1
	}
	slot := now.Truncate(width)
	i := int((now.UnixNano() / int64(width)) % buckets)
	if !b.start[i].Equal(slot) {
		b.start[i] = slot
		b.ok[i], b.fail[i] = 0, 0
	}
	return i
}
