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

// Ticket is a call's admission by Allow, to hand back to Done or Abandon.
// It names the generation the call was admitted in: every change of state
// starts a new one, and only calls admitted in the current generation
// count. The zero Ticket counts for nothing.
type Ticket struct{ gen uint64 }

// Breaker is one circuit breaker.
type Breaker struct {
	cfg   Config
	epoch time.Time     // bucket slots count widths from here
	width time.Duration // of a bucket: Window/buckets

	mu        sync.Mutex
	state     State
	gen       uint64 // generation: advances on every change of state
	openUntil time.Time
	probes    int // half-open: probes in flight
	successes int // half-open: successful probes
	streak    int // consecutive failed outcomes that counted, across states
	// Rolling window: counts per bucket, and the slot each bucket counts.
	ok, fail [buckets]int
	slot     [buckets]int64
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
	return &Breaker{cfg: cfg, epoch: cfg.Now(), width: max(cfg.Window/buckets, 1), gen: 1}
}

// State returns the current state.
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tickLocked(b.cfg.Now())
	return b.state
}

// Failures returns how many outcomes in a row, up to now, were failures:
// those reported by Done that counted (see Done), reset by a success that
// counted. It is for status pages; the breaker opens on its rolling
// window's failure ratio, not on this count.
func (b *Breaker) Failures() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.streak
}

// Allow asks to make a call. It returns ErrOpen to fail fast; otherwise the
// caller must report the call's end exactly once, with Done or Abandon and
// the returned Ticket.
func (b *Breaker) Allow() (Ticket, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Only an open breaker changes with time alone, so a closed one admits
	// without reading the clock (which costs more than the rest of Allow).
	if b.state == Open {
		b.tickLocked(b.cfg.Now())
	}
	switch b.state {
	case Open:
		return Ticket{}, ErrOpen
	case HalfOpen:
		if b.probes >= b.cfg.HalfOpenProbes-b.successes {
			return Ticket{}, ErrOpen
		}
		b.probes++
	}
	return Ticket{b.gen}, nil
}

// Done reports the outcome of a call admitted with t. It counts only if
// the breaker has not changed state since: a call admitted while closed
// that ends after the breaker opened, or during half-open, is not a probe,
// and a probe that ends after its half-open period is over counts for
// nothing.
func (b *Breaker) Done(t Ticket, success bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// A ticket of another generation counts for nothing, and an open
	// breaker admitted no call of its own generation: moving it to
	// half-open first (tickLocked) would only start yet another one. So the
	// clock is read only for an outcome that counts.
	if t.gen != b.gen || b.state == Open {
		return
	}
	if success {
		b.streak = 0
	} else {
		b.streak++
	}
	now := b.cfg.Now()
	if b.state == HalfOpen {
		b.probes--
		if !success {
			b.openLocked(now)
			return
		}
		b.successes++
		if b.successes >= b.cfg.HalfOpenProbes {
			b.setLocked(Closed)
			b.ok, b.fail = [buckets]int{}, [buckets]int{}
		}
		return
	}
	// Closed: an open breaker admits no call of its generation.
	n := int64(now.Sub(b.epoch) / b.width)
	i := int(n % buckets)
	if i < 0 {
		i += buckets // a clock set back before the breaker was made
	}
	if b.slot[i] != n {
		b.slot[i], b.ok[i], b.fail[i] = n, 0, 0
	}
	if success {
		b.ok[i]++
	} else {
		b.fail[i]++
	}
	var ok, fail int
	for j := range buckets {
		if age := n - b.slot[j]; age >= 0 && age < buckets {
			ok += b.ok[j]
			fail += b.fail[j]
		}
	}
	if total := ok + fail; total >= b.cfg.MinRequests && float64(fail) >= b.cfg.FailureRatio*float64(total) {
		b.openLocked(now)
	}
}

// Abandon reports that a call admitted with t ended with no outcome that
// tells about the upstream, for example because its caller gave up. The
// call counts as neither success nor failure; if it was a probe, its slot
// is free for another.
func (b *Breaker) Abandon(t Ticket) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.gen == b.gen && b.state == HalfOpen {
		b.probes--
	}
}

func (b *Breaker) openLocked(now time.Time) {
	b.setLocked(Open)
	b.openUntil = now.Add(b.cfg.OpenFor)
}

// setLocked enters state s and a new generation.
func (b *Breaker) setLocked(s State) {
	b.state = s
	b.gen++
	b.probes, b.successes = 0, 0
}

// tickLocked moves an open breaker to half-open once OpenFor has passed.
func (b *Breaker) tickLocked(now time.Time) {
	if b.state == Open && !now.Before(b.openUntil) {
		b.setLocked(HalfOpen)
	}
}
