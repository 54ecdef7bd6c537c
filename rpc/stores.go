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

// TxLog is the durable log of TCC transactions that a coordinator writes
// before it acts, so that a restarted coordinator can finish every decided
// transaction. The coordination node implements it.
type TxLog interface {
	// Begin records a new transaction and its branches' services.
	Begin(ctx context.Context, txID string, branches []string) error
	// Decide records the outcome: commit (confirm every branch) or not
	// (cancel every branch). A decision, once recorded, never changes.
	Decide(ctx context.Context, txID string, commit bool) error
	// Done records that every branch has confirmed or cancelled.
	Done(ctx context.Context, txID string) error
}
