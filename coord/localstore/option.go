package localstore

import (
	"log/slog"
	"time"
)

// Defaults.
const (
	// DefaultGCInterval is how often the value log is garbage collected.
	DefaultGCInterval = 5 * time.Minute
	// DefaultMaxAttempts is how many times Update runs its function before
	// giving up on conflicts with ErrConflict.
	DefaultMaxAttempts = 100
)

// Option configures Open.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	logger      *slog.Logger
	logLevel    slog.Level
	syncWrites  bool
	gcInterval  time.Duration
	maxAttempts int
	vlogSize    int64 // value log file size; 0: valueLogFileSize (tests set less)
}

func newConfig(opts []Option) config {
	c := config{
		logLevel:    slog.LevelWarn,
		syncWrites:  true,
		gcInterval:  DefaultGCInterval,
		maxAttempts: DefaultMaxAttempts,
	}
	for _, o := range opts {
		o.apply(&c)
	}
	if c.maxAttempts < 1 {
		c.maxAttempts = 1
	}
	return c
}

// WithLogger sends Badger's log messages, and the store's own warnings (a
// failed value log GC), to l. Badger messages carry the attribute
// component=badger and are filtered by WithLogLevel. Default: no logging.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}

// WithLogLevel sets the lowest level of Badger's own messages that reach the
// logger given to WithLogger. Badger is chatty at INFO (every compaction and
// memtable flush), so the default is slog.LevelWarn; use slog.LevelInfo or
// slog.LevelDebug to investigate Badger itself.
func WithLogLevel(level slog.Level) Option {
	return optionFunc(func(c *config) { c.logLevel = level })
}

// WithSyncWrites sets whether every committed write is fsynced before the
// call that made it returns. Default: true.
//
// WithSyncWrites(false) trades durability for speed: a write that returned
// has reached the operating system (memory-mapped files), so it survives a
// crash of the process, but an operating system crash or power loss can
// lose the most recent writes. Recovery still never exposes a partial
// transaction. Features that promise durability (the outbox, the TCC
// barrier) rely on the default.
func WithSyncWrites(sync bool) Option {
	return optionFunc(func(c *config) { c.syncWrites = sync })
}

// WithGCInterval sets how often a background goroutine runs Badger's value
// log garbage collection (discard ratio 0.5), which reclaims disk space held
// by overwritten or deleted large values. A zero or negative interval
// disables it. Default: DefaultGCInterval (5 minutes).
func WithGCInterval(d time.Duration) Option {
	return optionFunc(func(c *config) { c.gcInterval = d })
}

// WithMaxAttempts sets how many times Update runs its function when commits
// conflict with concurrent transactions before it returns ErrConflict.
// Values below 1 mean 1 (no retry). Default: DefaultMaxAttempts (100).
func WithMaxAttempts(n int) Option {
	return optionFunc(func(c *config) { c.maxAttempts = n })
}
