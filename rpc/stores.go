package rpc

import (
	"context"
	"time"
)

// LimiterStore grants token leases for cluster-scoped rate limits, so that
// instances share one limit without a network round trip per call: an
// instance takes a batch of tokens, spends them locally, and returns what it
// did not use. The coordination node implements it.
type LimiterStore interface {
	// Acquire asks for up to want tokens of the limit identified by key,
	// which admits rate tokens per period across the cluster. It returns the
	// tokens granted (possibly 0) and when the grant expires; tokens not
	// spent by then are forfeited.
	Acquire(ctx context.Context, key string, want int, rate int, per time.Duration) (granted int, expires time.Time, err error)
	// Release returns unspent tokens of a grant before it expires.
	Release(ctx context.Context, key string, tokens int) error
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
