package tcc

import (
	"log/slog"

	"time"

	"connectrpc.com/connect/v2"
	"go.opentelemetry.io/otel/trace"
)

// CoordinatorOption tunes a Coordinator.
type CoordinatorOption interface{ applyCoord(*coordConfig) }

type coordOptionFunc func(*coordConfig)

func (f coordOptionFunc) applyCoord(c *coordConfig) { f(c) }

type coordConfig struct {
	name       string
	timeout    time.Duration
	staleAfter time.Duration
	retention  time.Duration
	logger     *slog.Logger
	hook       func(PhaseReport)
	tracer     trace.Tracer // WithTracerProvider's; nil: no spans
}

// PhaseReport describes one call of a phase that a coordinator (or its
// recovery) made, for metrics.
type PhaseReport struct {
	// Service is the participant's discovery name; Procedure the phase's.
	Service, Procedure string
	// Phase is the phase.
	Phase Phase
	// Code is the call's status; 0 means success.
	Code connect.Code
	// Duration is the call's time.
	Duration time.Duration
}

// WithPhaseHook calls hook after every phase call the coordinator makes,
// failed ones included, on the calling goroutine: it must be fast and safe
// for concurrent use. Export to Prometheus or OpenTelemetry from it.
// Default: none.
func WithPhaseHook(hook func(PhaseReport)) CoordinatorOption {
	return coordOptionFunc(func(c *coordConfig) { c.hook = hook })
}

// WithName names the coordinator in the transactions it logs (shown by
// concord status). Default: none.
func WithName(name string) CoordinatorOption {
	return coordOptionFunc(func(c *coordConfig) { c.name = name })
}

// WithDefaultTimeout sets the timeout of transactions that do not set one
// with WithTimeout. Values below one second mean one second. Default:
// DefaultTimeout.
func WithDefaultTimeout(d time.Duration) CoordinatorOption {
	return coordOptionFunc(func(c *coordConfig) { c.timeout = max(d, time.Second) })
}

// WithStaleAfter sets how long recovery waits after a decided
// transaction's last log record before it drives the transaction itself
// (its coordinator writes a record after every failed round, so a live
// one is not taken over). Values below one second mean one second.
// Default: DefaultStaleAfter.
func WithStaleAfter(d time.Duration) CoordinatorOption {
	return coordOptionFunc(func(c *coordConfig) { c.staleAfter = max(d, time.Second) })
}

// WithFinishedRetention sets how long a finished transaction stays listed
// by concord status (every cancelled or retried one; confirmed ones are
// sampled, see the package doc). Default: txlog.DefaultFinishedRetention.
func WithFinishedRetention(d time.Duration) CoordinatorOption {
	return coordOptionFunc(func(c *coordConfig) { c.retention = d })
}

// WithCoordinatorLogger sets where the coordinator reports phase failures
// and recovery. Default: no logging.
func WithCoordinatorLogger(l *slog.Logger) CoordinatorOption {
	return coordOptionFunc(func(c *coordConfig) {
		if l != nil {
			c.logger = l
		}
	})
}

// TxOption tunes one transaction of Run.
type TxOption interface{ applyTx(*txConfig) }

type txOptionFunc func(*txConfig)

func (f txOptionFunc) applyTx(c *txConfig) { f(c) }

type txConfig struct{ timeout time.Duration }

// WithTimeout sets the transaction's timeout (see DefaultTimeout). Values
// below one second mean one second.
func WithTimeout(d time.Duration) TxOption {
	return txOptionFunc(func(c *txConfig) { c.timeout = max(d, time.Second) })
}
