package rpc

import (
	"context"
	"time"
)

// LimiterStore grants tokens of cluster-scoped rate limits, so that the
// instances of a service share one limit without a network round trip per
// call: an instance takes a batch of tokens, spends them locally, and
// returns what it did not spend. The limit is a token bucket of rate tokens
// per period holding at most burst. The coordination node implements it.
type LimiterStore interface {
	// Acquire takes up to want tokens of the limit identified by key and
	// returns how many it granted (possibly 0), and, when it granted none,
	// how long until one is available.
	Acquire(ctx context.Context, key string, want, rate int, per time.Duration, burst int) (granted int, retryAfter time.Duration, err error)
	// Release gives back tokens that were acquired but not spent.
	Release(ctx context.Context, key string, tokens, rate int, per time.Duration) error
}
