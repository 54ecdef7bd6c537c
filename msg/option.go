package msg

import (
	"database/sql"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Defaults of the options.
const (
	// DefaultSweepInterval is how often a Relay looks for rows that no
	// commit told it about (left by a crash, or by another process
	// sharing a SQL database).
	DefaultSweepInterval = 5 * time.Second
	// DefaultBatch is how many outbox rows a Relay reads at a time.
	DefaultBatch = 256
	// DefaultPublishTimeout bounds one publish of a Relay, and of a dead
	// letter.
	DefaultPublishTimeout = 10 * time.Second
	// DefaultConcurrency is how many handlers of one Subscription run at
	// once in a process.
	DefaultConcurrency = 16
	// DefaultMaxDeliver is how many deliveries a message gets before it
	// goes to the dead letters.
	DefaultMaxDeliver = 5
	// DefaultBackoff is the delay before a message whose handler failed
	// once is delivered again; it doubles with each further failure.
	DefaultBackoff = time.Second
	// DefaultMaxBackoff bounds the delay before a failed message is
	// delivered again.
	DefaultMaxBackoff = time.Minute
	// DefaultAckWait is how long JetStream waits for a handler's answer
	// before it delivers the message again; a running handler extends it.
	DefaultAckWait = 30 * time.Second
	// DefaultInboxRetention is how long an inbox row is kept: a duplicate
	// that arrives later runs the handler again.
	DefaultInboxRetention = 7 * 24 * time.Hour
)

// Option tunes a Relay (StartRelay), a Subscription (Subscribe), an
// Outbox (NewOutbox) or a SQLStore (SQL). Each option's doc says which
// ones use it and its default; the others ignore it.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	logger         *slog.Logger
	now            func() time.Time
	sweep          time.Duration
	batch          int
	publishTimeout time.Duration
	concurrency    int
	maxDeliver     int
	backoff        time.Duration
	maxBackoff     time.Duration
	ackWait        time.Duration
	retention      time.Duration
	cleanEvery     time.Duration
	txOpt          sql.TxOptions
	metrics        func(Event)
	tracer         trace.Tracer                  // WithTracing's; nil: no spans
	propagator     propagation.TextMapPropagator // WithTracing's

	// Test hooks (export_test.go).
	afterCommit func(d *Delivery) bool // true: skip the ack, as a crash would
}

func newConfig(opts []Option) *config {
	c := &config{
		logger:         slog.New(slog.DiscardHandler),
		now:            time.Now,
		sweep:          DefaultSweepInterval,
		batch:          DefaultBatch,
		publishTimeout: DefaultPublishTimeout,
		concurrency:    DefaultConcurrency,
		maxDeliver:     DefaultMaxDeliver,
		backoff:        DefaultBackoff,
		maxBackoff:     DefaultMaxBackoff,
		ackWait:        DefaultAckWait,
		retention:      DefaultInboxRetention,
		cleanEvery:     time.Hour,
	}
	for _, o := range opts {
		o.apply(c)
	}
	c.maxBackoff = max(c.maxBackoff, c.backoff)
	return c
}

// WithLogger sets where failures that cannot be returned to a caller are
// reported (a publish that failed and will be retried, a handler error).
// Relay and Subscription. Default: no logging.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithClock sets the clock that stamps outbox and inbox rows. Relay and
// Subscription (and Outbox, through NewOutbox). Default: time.Now.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) {
		if now != nil {
			c.now = now
		}
	})
}

// WithSweepInterval sets how often a Relay looks for outbox rows without
// being woken: rows left by a crash, or written by another process that
// shares a SQL database. Values below 10ms mean 10ms. Relay. Default:
// DefaultSweepInterval (5s).
func WithSweepInterval(d time.Duration) Option {
	return optionFunc(func(c *config) { c.sweep = max(d, 10*time.Millisecond) })
}

// WithBatch sets how many outbox rows a Relay reads and publishes per
// round. Values below 1 mean 1. Relay. Default: DefaultBatch (256).
func WithBatch(n int) Option {
	return optionFunc(func(c *config) { c.batch = max(n, 1) })
}

// WithPublishTimeout bounds one publish to JetStream (a relayed message,
// a dead letter). Values below 100ms mean 100ms. Relay and Subscription.
// Default: DefaultPublishTimeout (10s).
func WithPublishTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.publishTimeout = max(d, 100*time.Millisecond) })
}

// WithConcurrency sets how many handlers of a Subscription run at once in
// this process. Messages with the same key never run at once whatever
// the value (see the package doc). Values below 1 mean 1. Subscription.
// Default: DefaultConcurrency (16).
func WithConcurrency(n int) Option {
	return optionFunc(func(c *config) { c.concurrency = max(n, 1) })
}

// WithMaxDeliver sets how many times a message is delivered to a
// consumer before it goes to the dead letters: the handler failed on the
// last one, or it was delivered more often than that without an answer
// (a handler that crashes its process). Values below 1 mean 1.
// Subscription. Default: DefaultMaxDeliver (5).
func WithMaxDeliver(n int) Option {
	return optionFunc(func(c *config) { c.maxDeliver = max(n, 1) })
}

// WithBackoff sets the delay before a failed message is delivered again:
// initial after the first failure, doubling after each further one, at
// most maxDelay. Values below 10ms mean 10ms. Subscription. Default:
// DefaultBackoff (1s) doubling up to DefaultMaxBackoff (1 min).
func WithBackoff(initial, maxDelay time.Duration) Option {
	return optionFunc(func(c *config) {
		c.backoff = max(initial, 10*time.Millisecond)
		c.maxBackoff = max(maxDelay, 10*time.Millisecond)
	})
}

// WithAckWait sets how long JetStream waits for a delivered message's
// answer before it delivers it again (to any instance): what a crashed
// consumer costs. A running handler extends it every third of the wait.
// Values below 1s mean 1s. Subscription. Default: DefaultAckWait (30s).
func WithAckWait(d time.Duration) Option {
	return optionFunc(func(c *config) { c.ackWait = max(d, time.Second) })
}

// WithInboxRetention sets how long inbox rows are kept. A duplicate that
// arrives after its row was deleted is handled again, so keep it above
// the longest time a message can be re-published or redelivered (the
// stream keeps messages 7 days). Values below one minute mean one minute.
// Subscription. Default: DefaultInboxRetention (7 days).
func WithInboxRetention(d time.Duration) Option {
	return optionFunc(func(c *config) { c.retention = max(d, time.Minute) })
}

// WithTxOptions sets the options (isolation level) of the transactions a
// SQLStore begins for handlers. SQL. Default: the driver's default
// isolation, read-write.
func WithTxOptions(o sql.TxOptions) Option {
	return optionFunc(func(c *config) { c.txOpt = o })
}
