package tcc

import (
	"context"
	"log/slog"
	"time"

	"github.com/concordrpc/concord/internal/wait"
)

// DefaultCleanupInterval is how often RunCleanup runs a barrier's Cleanup.
const DefaultCleanupInterval = time.Hour

// RunCleanup runs b.Cleanup every interval (DefaultCleanupInterval if
// interval <= 0) until ctx ends, and at once again while a call deleted
// its full limit (a backlog), so that the rows of finished branches go
// after their retention without one large transaction. Failures are
// logged to logger (nil: discarded) and retried at the next interval. A
// concord.App runs it for its local barrier (WithTCCLocalBarrier); run it
// for a SQL barrier in one process per database, or in each (Cleanup is
// safe to run concurrently, only wasteful).
func RunCleanup(ctx context.Context, b Barrier, interval time.Duration, logger *slog.Logger) {
	if interval <= 0 {
		interval = DefaultCleanupInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	limit := DefaultCleanupLimit
	if c, ok := b.(interface{ cleanupLimit() int }); ok {
		limit = c.cleanupLimit()
	}
	for {
		n, err := b.Cleanup(ctx, time.Now())
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			logger.Warn("tcc: barrier cleanup failed; retrying later", slog.Any("error", err))
		case n >= limit:
			continue // more to delete
		case n > 0:
			logger.Debug("tcc: barrier cleanup", slog.Int("branches", n))
		}
		if !wait.Sleep(ctx, interval) {
			return
		}
	}
}

func (b *BadgerBarrier) cleanupLimit() int { return b.cfg.cleanupLimit }

func (b *SQLBarrier) cleanupLimit() int { return b.cfg.cleanupLimit }
