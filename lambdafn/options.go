package lambdafn

import (
	"log/slog"
	"time"

	"github.com/concordrpc/concord/rpc"
)

// Limits and defaults.
const (
	// MaxResponseBytes is Lambda's limit on a synchronous invocation's
	// response payload, documented as 6 MB and enforced from a little over
	// 6 MiB: it counts the whole JSON document, after base64 and JSON
	// escaping, not only the body.
	MaxResponseBytes = 6 << 20
	// DefaultReadMaxBytes caps a request body after base64 decoding. It is
	// rpc.DefaultReadMaxBytes, so that the adapter refuses no body that the
	// server behind it would accept.
	DefaultReadMaxBytes = rpc.DefaultReadMaxBytes
	// DefaultDeadlineMargin is the time kept back from the invocation's
	// deadline to write and send the answer.
	DefaultDeadlineMargin = 100 * time.Millisecond
)

// An Option tunes a Handler.
type Option interface{ apply(*config) }

type config struct {
	readMax int
	respMax int
	margin  time.Duration
	logger  *slog.Logger
}

func defaultConfig() config {
	return config{
		readMax: DefaultReadMaxBytes,
		respMax: MaxResponseBytes,
		margin:  DefaultDeadlineMargin,
		logger:  slog.Default(),
	}
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithReadMaxBytes caps a request body, after base64 decoding; a larger
// body is answered with resource_exhausted before the handler runs. Keep it
// at or below the server's rpc.WithReadMaxBytes. n <= 0 removes the cap
// (Lambda still caps the whole event at 6 MB). Default:
// DefaultReadMaxBytes (4 MiB).
func WithReadMaxBytes(n int) Option {
	return optionFunc(func(c *config) { c.readMax = n })
}

// WithResponseMaxBytes caps the response payload (the JSON document Lambda
// receives); a larger answer is replaced by resource_exhausted. Values
// above MaxResponseBytes or <= 0 mean MaxResponseBytes, since Lambda
// refuses more. Default: MaxResponseBytes.
func WithResponseMaxBytes(n int) Option {
	return optionFunc(func(c *config) {
		if n <= 0 || n > MaxResponseBytes {
			n = MaxResponseBytes
		}
		c.respMax = n
	})
}

// WithDeadlineMargin sets how long before the invocation's deadline the
// call's context ends. Half of it is the grace the handler gets to answer
// after its context ended; the other half is left to send the answer to
// Lambda. d < 0 means 0. Default: DefaultDeadlineMargin (100 ms).
func WithDeadlineMargin(d time.Duration) Option {
	return optionFunc(func(c *config) { c.margin = max(d, 0) })
}

// WithLogger sets the logger of adapter-level failures: undecodable
// events, handler panics, handlers that outlive the invocation. Default:
// slog.Default(), like rpc.Server.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}
