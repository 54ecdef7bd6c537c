package rpc

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect/v2"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Server defaults.
const (
	// DefaultCompressMinBytes is the response size below which responses are
	// sent uncompressed. connect-go compresses every response by default,
	// which for small messages costs more CPU than it saves bandwidth.
	DefaultCompressMinBytes = 1024
	// DefaultReadMaxBytes caps a request message, after decompression.
	DefaultReadMaxBytes = 4 << 20
	// DefaultSendMaxBytes caps a response message.
	DefaultSendMaxBytes = 4 << 20
	// DefaultReadHeaderTimeout bounds reading request headers.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout closes keep-alive connections idle this long.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultDrainTimeout bounds how long shutdown waits for in-flight calls.
	DefaultDrainTimeout = 15 * time.Second
)

// ServerOption configures a Server.
type ServerOption interface{ applyServer(*serverConfig) }

type serverOptionFunc func(*serverConfig)

func (f serverOptionFunc) applyServer(c *serverConfig) { f(c) }

type serverConfig struct {
	logger            *slog.Logger
	callLogLevel      slog.Level
	logCalls          bool
	recovery          bool
	metrics           MetricsHook
	tracer            trace.TracerProvider
	propagator        propagation.TextMapPropagator
	validator         protovalidate.Validator
	validation        bool
	admission         connect.ServerInterceptor
	admissionOpts     []AdmissionOption
	tcc               []connect.ServerInterceptor
	fencing           FencingGuard
	interceptors      []connect.ServerInterceptor
	reflection        bool
	cors              *CORS
	tls               *tls.Config
	compressMinBytes  int
	readMaxBytes      int
	sendMaxBytes      int
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	drainTimeout      time.Duration
	drainDelay        time.Duration
	gates             []string
	handlers          []route
}

type route struct {
	pattern string
	handler http.Handler
}

func defaultServerConfig() serverConfig {
	return serverConfig{
		logger:            slog.Default(),
		callLogLevel:      slog.LevelDebug,
		logCalls:          true,
		recovery:          true,
		validation:        true,
		reflection:        true,
		compressMinBytes:  DefaultCompressMinBytes,
		readMaxBytes:      DefaultReadMaxBytes,
		sendMaxBytes:      DefaultSendMaxBytes,
		readHeaderTimeout: DefaultReadHeaderTimeout,
		idleTimeout:       DefaultIdleTimeout,
		drainTimeout:      DefaultDrainTimeout,
	}
}

// WithLogger sets the logger for call logs, recovered panics and lifecycle
// events. Default: slog.Default() at the time NewServer runs.
func WithLogger(l *slog.Logger) ServerOption {
	return serverOptionFunc(func(c *serverConfig) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithCallLogLevel sets the level of the log line written for each call that
// succeeds. Failed calls log at Warn, and at Error for internal, unknown and
// data_loss. Default: slog.LevelDebug.
func WithCallLogLevel(level slog.Level) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.callLogLevel = level })
}

// WithoutCallLogging removes the request-logging interceptor.
func WithoutCallLogging() ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.logCalls = false })
}

// WithoutRecovery removes the panic-recovery interceptor: a panicking
// handler then crashes the process, as in plain net/http.
func WithoutRecovery() ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.recovery = false })
}

// WithMetrics installs a hook that observes every finished call. Default:
// none.
func WithMetrics(hook MetricsHook) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.metrics = hook })
}

// WithValidator sets the protovalidate validator. Default: one built by
// protovalidate.New on first use.
func WithValidator(v protovalidate.Validator) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.validator = v })
}

// WithoutValidation removes request validation.
func WithoutValidation() ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.validation = false })
}

// WithAdmission replaces the admission slot of the chain. Default:
// NewAdmissionInterceptor over the server's method policies, which applies
// their rate limits (see WithAdmissionOptions).
func WithAdmission(ic connect.ServerInterceptor) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.admission = ic })
}

// WithAdmissionOptions configures the default admission interceptor, for
// example with WithMaxInFlight for load shedding.
func WithAdmissionOptions(opts ...AdmissionOption) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.admissionOpts = append(c.admissionOpts, opts...) })
}

// WithFencingGuard checks the fencing tokens of calls to fenced methods
// with guard (NewFencingInterceptor), after the TCC slot and before user
// interceptors. Default: no guard; fenced methods are then not checked, and
// a concord.App supplies one over its local store.
func WithFencingGuard(guard FencingGuard) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.fencing = guard })
}

// WithTCCParticipant fills the TCC slot of the chain (the participant's
// barrier against duplicate, empty and hanging calls) with interceptors,
// in argument order: one per barrier when services of one server keep
// their state in different stores (each tcc.NewInterceptor passes other
// services' calls through). Default: empty.
func WithTCCParticipant(ics ...connect.ServerInterceptor) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.tcc = append(c.tcc, ics...) })
}

// WithInterceptors appends interceptors that run after the default chain,
// right before the handler, in argument order.
func WithInterceptors(ics ...connect.ServerInterceptor) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.interceptors = append(c.interceptors, ics...) })
}

// WithoutReflection stops serving gRPC server reflection. Reflection
// describes every protobuf type linked into the binary; turn it off on
// public endpoints that must not reveal their schema. Default: served.
func WithoutReflection() ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.reflection = false })
}

// WithCORS answers browser preflight requests and sets CORS headers as cors
// describes. Default: no CORS headers (same-origin browsers only).
func WithCORS(cors CORS) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.cors = &cors })
}

// WithTLS serves TLS with HTTP/2 and HTTP/1.1 using cfg, which must hold a
// certificate. Default: cleartext HTTP/1.1 and h2c.
func WithTLS(cfg *tls.Config) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.tls = cfg })
}

// WithCompressMinBytes sets the response size below which responses are not
// compressed. Default: DefaultCompressMinBytes.
func WithCompressMinBytes(n int) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.compressMinBytes = n })
}

// WithReadMaxBytes caps request messages, before and after
// decompression; larger ones fail with resource_exhausted and a message
// naming the limit. Compressed requests decompress at most 2×GOMAXPROCS
// (at least 4) at a time, so a burst of compression bombs holds at most
// that many times the limit in memory. n <= 0 removes the cap.
// Default: DefaultReadMaxBytes.
func WithReadMaxBytes(n int) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.readMaxBytes = n })
}

// WithSendMaxBytes caps response messages. Default: DefaultSendMaxBytes.
func WithSendMaxBytes(n int) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.sendMaxBytes = n })
}

// WithTimeouts sets the HTTP server's header-read and idle timeouts.
// Defaults: DefaultReadHeaderTimeout and DefaultIdleTimeout.
func WithTimeouts(readHeader, idle time.Duration) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.readHeaderTimeout, c.idleTimeout = readHeader, idle })
}

// WithDrain sets graceful shutdown: once shutdown starts the server reports
// not ready, waits delay (so that load balancers stop sending), then stops
// accepting and waits up to timeout for in-flight calls. Defaults: 0 and
// DefaultDrainTimeout.
func WithDrain(delay, timeout time.Duration) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.drainDelay, c.drainTimeout = delay, timeout })
}

// WithHandler serves handler for pattern (http.ServeMux syntax, like
// "GET /version") beside the RPC routes. It runs outside the interceptor
// chain, so it gets no authentication, limits or logging from it: serve
// admin endpoints on a loopback listener of their own instead (as
// concord.App does with WithAdminAddr).
func WithHandler(pattern string, handler http.Handler) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.handlers = append(c.handlers, route{pattern, handler}) })
}

// WithReadinessGates declares components that must report ready (see
// Server.SetReady) before the server does. Default: none, so the server is
// ready as soon as it serves.
func WithReadinessGates(names ...string) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.gates = append(c.gates, names...) })
}
