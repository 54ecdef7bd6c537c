package ratelimit

import (
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// BenchmarkAllow compares the decision cost of each algorithm with
// golang.org/x/time/rate's Limiter.Allow in the same run, with a limit high
// enough that most calls are admitted.
//
//	go test ./rpc/ratelimit -run '^$' -bench Allow -benchmem
func BenchmarkAllow(b *testing.B) {
	b.Run("x/time/rate", func(b *testing.B) {
		l := rate.NewLimiter(rate.Limit(1e9), 1000)
		b.ReportAllocs()
		for b.Loop() {
			l.Allow()
		}
	})
	for _, alg := range []struct {
		name string
		a    Algorithm
	}{{"token_bucket", TokenBucket}, {"sliding_window", SlidingWindow}, {"leaky_bucket", LeakyBucket}} {
		b.Run(alg.name, func(b *testing.B) {
			l, err := New(Config{Algorithm: alg.a, Rate: 1e9, Per: time.Second, Burst: 1000}, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				l.Allow()
			}
		})
	}
}
