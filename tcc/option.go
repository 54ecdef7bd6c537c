package tcc

import (
	"database/sql"
	"log/slog"
	"time"
)

// Defaults of the barrier options.
const (
	// DefaultRetention is how long the rows of a finished branch are kept.
	DefaultRetention = 7 * 24 * time.Hour
	// DefaultCleanupLimit is how many finished branches one Cleanup call
	// deletes at most.
	DefaultCleanupLimit = 1000
)

// Option tunes a barrier (NewBadgerBarrier, NewSQLBarrier). Each option's
// doc says which barriers use it and its default.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	retention    time.Duration
	cleanupLimit int
	now          func() time.Time
	logger       *slog.Logger
	table        string        // SQLBarrier only
	txOpt        sql.TxOptions // SQLBarrier only
}

func newConfig(opts []Option) *config {
	c := &config{
		retention:    DefaultRetention,
		cleanupLimit: DefaultCleanupLimit,
		now:          time.Now,
		logger:       slog.New(slog.DiscardHandler),
		table:        DefaultTable,
	}
	for _, o := range opts {
		o.apply(c)
	}
	return c
}

// WithRetention sets how long the rows of a confirmed or cancelled branch
// are kept before Cleanup may delete them. A duplicate or late call that
// arrives after its rows were deleted is no longer recognised, so keep it
// well above the longest time a call can be delayed or retried. Values
// below one minute mean one minute. Default: DefaultRetention (7 days).
func WithRetention(d time.Duration) Option {
	return optionFunc(func(c *config) { c.retention = max(d, time.Minute) })
}

// WithCleanupLimit sets how many finished branches one Cleanup call
// deletes at most, which bounds the size of its transaction. Values below
// 1 mean 1. Default: DefaultCleanupLimit (1000).
func WithCleanupLimit(n int) Option {
	return optionFunc(func(c *config) { c.cleanupLimit = max(n, 1) })
}

// WithClock sets the clock that stamps barrier rows (retention counts from
// the stamp). Default: time.Now.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) {
		if now != nil {
			c.now = now
		}
	})
}

// WithLogger sets where the barrier reports failures it cannot return to
// a caller (a refusal it could not record). Default: no logging.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}
