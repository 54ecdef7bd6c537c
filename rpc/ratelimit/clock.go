package ratelimit

import "time"

// Clock tells the time. Tests inject a fake one; the default is the real
// monotonic clock.
type Clock interface {
	// Now returns the current time in nanoseconds on a monotonic scale.
	Now() int64
}

// realClock reads the monotonic clock relative to a fixed start.
type realClock struct{ start time.Time }

func (c realClock) Now() int64 { return int64(time.Since(c.start)) }

// RealClock returns the real monotonic clock.
func RealClock() Clock { return realClock{start: time.Now()} }
