package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// Algorithm selects a limiter algorithm.
type Algorithm uint8

// The algorithms; see the package documentation.
const (
	TokenBucket Algorithm = iota + 1
	SlidingWindow
	LeakyBucket
)

// Config describes a limit.
type Config struct {
	// Algorithm is the algorithm.
	Algorithm Algorithm
	// Rate is the number of calls per Per; at least 1.
	Rate int
	// Per is the period of Rate; positive.
	Per time.Duration
	// Burst is the bucket capacity (TokenBucket) or the queue size
	// (LeakyBucket); at least 1 for those. SlidingWindow ignores it.
	Burst int
}

// Validate reports whether c describes a valid limit.
func (c Config) Validate() error {
	switch {
	case c.Algorithm < TokenBucket || c.Algorithm > LeakyBucket:
		return fmt.Errorf("ratelimit: unknown algorithm %d", c.Algorithm)
	case c.Rate < 1:
		return fmt.Errorf("ratelimit: rate %d is below 1", c.Rate)
	case c.Per <= 0:
		return fmt.Errorf("ratelimit: period %v is not positive", c.Per)
	case c.Algorithm != SlidingWindow && c.Burst < 1:
		return fmt.Errorf("ratelimit: burst %d is below 1", c.Burst)
	}
	return nil
}

// ErrLimited is returned (wrapped in a *LimitedError) when a call is not
// admitted.
var ErrLimited = errors.New("ratelimit: limit exceeded")

// LimitedError is a rejection with its retry delay.
type LimitedError struct {
	// RetryAfter is how long until the call would be admitted.
	RetryAfter time.Duration
}

func (e *LimitedError) Error() string {
	return fmt.Sprintf("ratelimit: limit exceeded, retry after %v", e.RetryAfter)
}

// Unwrap returns ErrLimited.
func (e *LimitedError) Unwrap() error { return ErrLimited }

// Limiter admits calls under one limit. It is safe for concurrent use.
type Limiter struct {
	cfg   Config
	clock Clock
	t     int64 // emission interval in ns (token and leaky bucket)
	tau   int64 // tolerance in ns

	mu sync.Mutex
	// GCRA: theoretical arrival time. Sliding window: start of the current
	// fixed window.
	tat int64
	// Sliding window counts.
	cur, prev int64
	// last is the latest time a decision used: a caller whose clock
	// reading was taken before another's decision (it was descheduled
	// between reading the clock and taking mu) decides at last instead,
	// so a stale reading never refuses a call the limit admits.
	last int64
}

// New returns a Limiter for cfg on clock (RealClock() if nil).
func New(cfg Config, clock Clock) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if clock == nil {
		clock = RealClock()
	}
	l := &Limiter{cfg: cfg, clock: clock}
	l.t = max(int64(cfg.Per)/int64(cfg.Rate), 1)
	switch cfg.Algorithm {
	case TokenBucket:
		l.tau = l.t * int64(cfg.Burst-1)
		l.tat = math.MinInt64 / 2 // a full bucket
	case LeakyBucket:
		l.tau = l.t * int64(cfg.Burst) // Burst callers may wait
		l.tat = math.MinInt64 / 2
	case SlidingWindow:
		l.tat = clock.Now()
	}
	return l, nil
}

// Config returns the limiter's configuration.
func (l *Limiter) Config() Config { return l.cfg }

// Allow decides at once: it admits the call and returns 0, or returns how
// long until it would be admitted. For LeakyBucket it admits only a call
// that need not wait; use Wait to queue.
func (l *Limiter) Allow() (admitted bool, retryAfter time.Duration) {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	now = l.advance(now)
	switch l.cfg.Algorithm {
	case SlidingWindow:
		return l.allowWindow(now)
	case LeakyBucket:
		tat := max(l.tat, now)
		if tat > now {
			return false, time.Duration(tat - now)
		}
		l.tat = tat + l.t
		return true, 0
	}
	tat := max(l.tat, now)
	if tat-now > l.tau {
		return false, time.Duration(tat - now - l.tau)
	}
	l.tat = tat + l.t
	return true, 0
}

// advance returns now, or the latest time a decision used if now is older;
// l.mu is held.
func (l *Limiter) advance(now int64) int64 {
	if now < l.last {
		return l.last
	}
	l.last = now
	return now
}

func (l *Limiter) allowWindow(now int64) (bool, time.Duration) {
	per := int64(l.cfg.Per)
	if elapsed := now - l.tat; elapsed >= per {
		windows := elapsed / per
		if windows == 1 {
			l.prev = l.cur
		} else {
			l.prev = 0
		}
		l.cur = 0
		l.tat += windows * per
	}
	elapsed := now - l.tat
	rate := int64(l.cfg.Rate)
	// estimate+1 <= rate, in integer arithmetic scaled by per:
	// prev*(per-elapsed) + (cur+1)*per <= rate*per
	if l.prev*(per-elapsed)+(l.cur+1)*per <= rate*per {
		l.cur++
		return true, 0
	}
	// Time until the previous window's weight has decayed enough, or until
	// the next window if the current one alone is full.
	if l.cur+1 > rate {
		return false, time.Duration(per - elapsed + l.waitInNextWindow(per))
	}
	// Need prev*(per-e) <= (rate-cur-1)*per, i.e. e >= per - (rate-cur-1)*per/prev.
	need := per - (rate-l.cur-1)*per/l.prev
	return false, time.Duration(max(need-elapsed, 1))
}

// waitInNextWindow is the extra wait into the next window, where this
// window's count becomes the previous one.
func (l *Limiter) waitInNextWindow(per int64) int64 {
	rate := l.cfg.Rate
	if l.cur < int64(rate) {
		return 0
	}
	// In the next window: cur*(per-e) + per <= rate*per  =>  e >= per - (rate-1)*per/cur.
	return max(per-int64(rate-1)*per/l.cur, 0)
}

// Wait admits the call, waiting for its slot when the algorithm queues
// (LeakyBucket), or returns a *LimitedError at once when the call cannot be
// admitted within the limit's bounds. It returns ctx's error, taking no
// slot, if ctx has ended or ends first, and a *LimitedError without waiting if ctx's deadline would pass
// before the slot. For TokenBucket and SlidingWindow it never waits.
func (l *Limiter) Wait(ctx context.Context) error {
	if l.cfg.Algorithm != LeakyBucket {
		if ok, retry := l.Allow(); !ok {
			return &LimitedError{RetryAfter: retry}
		}
		return nil
	}
	if err := ctx.Err(); err != nil { // an ended call takes no slot
		return err
	}
	now := l.clock.Now()
	l.mu.Lock()
	now = l.advance(now)
	tat := max(l.tat, now)
	wait := tat - now
	if wait > l.tau { // Burst callers wait already
		l.mu.Unlock()
		return &LimitedError{RetryAfter: time.Duration(wait - l.tau)}
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < time.Duration(wait) {
		l.mu.Unlock()
		return &LimitedError{RetryAfter: time.Duration(wait)}
	}
	l.tat = tat + l.t
	l.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	timer := time.NewTimer(time.Duration(wait))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		if l.tat == tat+l.t { // no later call queued behind us: give the slot back
			l.tat = tat
		}
		l.mu.Unlock()
		return ctx.Err()
	}
}
