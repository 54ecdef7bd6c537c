package wait

import (
	"context"
	"math/rand/v2"
	"time"
)

// Sleep waits for d or until ctx ends, and reports whether ctx is still
// alive (false: it ended first).
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Backoff returns the delay before retry number attempt (from 0): base
// doubled per attempt, at most ceiling, with jitter that draws it from
// the upper half of that, so that many retrying callers spread out.
func Backoff(attempt int, base, ceiling time.Duration) time.Duration {
	d := base << min(attempt, 20)
	if d <= 0 || d > ceiling {
		d = ceiling
	}
	return d/2 + rand.N(d/2+1)
}
