package rpc

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"sync"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Protocol is the wire protocol a client speaks.
type Protocol uint8

// The protocols.
const (
	// ProtocolConnect is the Connect protocol (the default).
	ProtocolConnect Protocol = iota
	// ProtocolGRPC is gRPC over HTTP/2.
	ProtocolGRPC
	// ProtocolGRPCWeb is gRPC-Web.
	ProtocolGRPCWeb
)

// ClientOption configures a Conn.
type ClientOption interface{ applyClient(*clientConfig) }

type clientOptionFunc func(*clientConfig)

func (f clientOptionFunc) applyClient(c *clientConfig) { f(c) }

type clientConfig struct {
	httpClient      connecthttp.HTTPClient
	httpVersion     HTTPVersion
	maxConnsPerHost int
	tls             *tls.Config
	protocol        Protocol
	json            bool
	breaker         connect.ClientInterceptor
	interceptors    []connect.ClientInterceptor
	http            []connecthttp.Option
	retryRatio      float64
	retryReserve    int
	fallback        Fallback
	now             func() time.Time
	balancing       Balancing
	zone            string
	probation       time.Duration
	metrics         ClientMetricsHook
	tracer          trace.TracerProvider
	propagator      propagation.TextMapPropagator
}

// WithHTTPClient sets the HTTP client of every call, replacing the default
// clients and their HTTP version policy (WithHTTPVersion,
// WithMaxConnsPerHost); calls then use whatever HTTP version c speaks.
// Default: an HTTP/1.1 keep-alive pool for Connect and gRPC-Web unary and
// server-streaming calls in cleartext, and HTTP/2 (h2c in cleartext) for the
// rest, see HTTPVersionAuto.
func WithHTTPClient(c connecthttp.HTTPClient) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.httpClient = c })
}

// WithClientTLS sets the TLS configuration of the default HTTP clients.
func WithClientTLS(c *tls.Config) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.tls = c })
}

// WithProtocol selects the wire protocol. Default: ProtocolConnect.
func WithProtocol(p Protocol) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.protocol = p })
}

// WithJSON sends requests as protobuf JSON instead of binary protobuf.
func WithJSON() ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.json = true })
}

// WithBreaker adds an interceptor in the circuit-breaker slot of the client
// chain, after the built-in per-instance breakers that methods with a
// CircuitBreaker policy get.
func WithBreaker(ic connect.ClientInterceptor) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.breaker = ic })
}

// WithRetryBudget bounds retries to ratio extra load plus a reserve of
// retries, over all calls of the Conn. Defaults: DefaultRetryRatio and
// DefaultRetryReserve.
func WithRetryBudget(ratio float64, reserve int) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.retryRatio, cfg.retryReserve = ratio, reserve })
}

// WithFallback degrades unary calls that fail after retries, or that an open
// circuit refused: f may fill the response and return nil. Default: none.
func WithFallback(f Fallback) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.fallback = f })
}

// WithBreakerClock sets the clock of the circuit breakers, for tests.
func WithBreakerClock(now func() time.Time) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.now = now })
}

// WithClientInterceptors adds interceptors that run before the policy
// interceptors, in argument order (the first is outermost).
func WithClientInterceptors(ics ...connect.ClientInterceptor) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.interceptors = append(cfg.interceptors, ics...) })
}

// WithTransportOptions passes options to connecthttp's transport, for
// example compression or message-size limits.
func WithTransportOptions(opts ...connecthttp.Option) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.http = append(cfg.http, opts...) })
}

// Conn reaches services over HTTP, either at one fixed base URL or at the
// instances a Resolver finds, and builds clients that apply the services'
// policies. The client chain, outermost first, is: tracing, when
// configured (WithClientTracing), the metrics hook (WithClientMetrics),
// WithClientInterceptors,
// the method timeout (NewClientDeadlineInterceptor), retries and fallback
// (RetryPolicy, under the retry budget; WithFallback), the breaker slot
// (WithBreaker), then instance selection: round robin over the instances
// whose per-instance, per-method circuit breaker (CircuitBreaker policy)
// admits the call. Each retry attempt selects again, so it goes to another
// instance when there is one.
//
// A breaker counts against an instance only failures that say the instance
// is unwell: it could not be reached or dropped the call, or it answered
// unavailable, internal or unknown. A call that its caller cancelled or
// that ran out of its deadline (the caller's or the method's Timeout,
// whichever side reports deadline_exceeded) counts neither way, and every
// other answer (resource_exhausted, invalid_argument, not_found, ...)
// counts as a success.
//
// A resolving Conn keeps an instance's load statistics and breakers while
// the last answer of some service it resolved names the instance; when the
// instance leaves every such answer, they are dropped (calls in flight to it
// finish normally), and an instance that returns starts afresh.
//
// A Conn is safe for concurrent use; share one per process and Close it at
// exit.
type Conn struct {
	cfg      clientConfig
	fixed    answer // the fixed URL and its endpoint, without a resolver
	resolver Resolver
	clients  httpClients
	opts     []connecthttp.Option

	budget  *retryBudget
	tracing connect.ClientInterceptor // nil without WithClientTracing

	mu        sync.Mutex
	endpoints map[string]*endpoint // by base URL: those some answer names
	answers   map[string]answer    // the last answer, by discovery name
}

// NewConn returns a Conn that sends every call to baseURL, like
// "http://127.0.0.1:8080".
func NewConn(baseURL string, opts ...ClientOption) *Conn {
	return newConn(baseURL, nil, opts)
}

// NewResolvingConn returns a Conn that resolves each service by its
// discovery name through r on every call and spreads calls over the
// instances (see Balancing).
func NewResolvingConn(r Resolver, opts ...ClientOption) *Conn {
	return newConn("", r, opts)
}

func newConn(baseURL string, r Resolver, opts []ClientOption) *Conn {
	cfg := clientConfig{retryRatio: DefaultRetryRatio, retryReserve: DefaultRetryReserve, now: time.Now, probation: DefaultProbation}
	for _, o := range opts {
		o.applyClient(&cfg)
	}
	c := &Conn{
		cfg: cfg, resolver: r,
		budget:    newRetryBudget(cfg.retryRatio, cfg.retryReserve),
		endpoints: map[string]*endpoint{},
		answers:   map[string]answer{},
	}
	c.clients = newHTTPClients(&cfg)
	if cfg.tracer != nil {
		c.tracing = NewClientTracingInterceptor(cfg.tracer, cfg.propagator, cfg.protocol)
	}
	switch cfg.protocol {
	case ProtocolGRPC:
		c.opts = append(c.opts, connecthttp.WithGRPC())
	case ProtocolGRPCWeb:
		c.opts = append(c.opts, connecthttp.WithGRPCWeb())
	}
	if cfg.json {
		c.opts = append(c.opts, connecthttp.WithProtoJSON())
	}
	c.opts = append(c.opts, connecthttp.WithCompressMinBytes(DefaultCompressMinBytes))
	c.opts = append(c.opts, cfg.http...)
	if r == nil {
		c.fixed = answer{instances: []Instance{{ID: baseURL, BaseURL: baseURL}}, endpoints: []*endpoint{c.newEndpoint(baseURL)}}
	}
	return c
}

// Client implements ClientConn.
func (c *Conn) Client(policy *ServicePolicy) *connect.Client {
	var transport connect.Transport = &pickTransport{conn: c, policy: policy}
	if c.resolver == nil && !hasBreaker(policy) {
		transport = c.fixed.endpoints[0].transport // one instance, nothing to track
	}
	var chain []connect.ClientInterceptor
	if c.tracing != nil {
		chain = append(chain, c.tracing)
	}
	if c.cfg.metrics != nil {
		chain = append(chain, newClientMetricsInterceptor(policy.DiscoveryName, c.cfg.metrics))
	}
	chain = append(chain, c.cfg.interceptors...)
	chain = append(chain, NewClientDeadlineInterceptor(policy.Method), newRetryInterceptor(policy.Method, c.budget, c.cfg.fallback))
	if c.cfg.breaker != nil {
		chain = append(chain, c.cfg.breaker)
	}
	return connect.NewClient(transport, chain...)
}

// Close releases idle connections of the default HTTP clients. Calls in
// flight are not interrupted.
func (c *Conn) Close() error {
	for _, hc := range c.clients.owned {
		hc.CloseIdleConnections()
	}
	return nil
}

// newEndpoint returns the state of one instance. Its transport sends each
// call over the HTTP version the call's kind gets (HTTPVersion), so the
// balancer's in-flight and latency signals cover the instance whichever
// connection a call takes.
func (c *Conn) newEndpoint(baseURL string) *endpoint {
	return &endpoint{transport: c.newTransport(baseURL)}
}

// breakerFailure reports whether err, the end of a call made with ctx,
// says that the instance is unwell, and so counts against its breaker.
// These count, while the caller still waits (ctx not done):
//   - a transport failure (see transportFailure): the instance could not be
//     reached, or dropped the call, whatever code the client reports;
//   - the instance's answer unavailable, internal or unknown.
//
// Nothing else counts: not the caller's cancellation or deadline, which
// says nothing about the instance, nor any other code the instance answers,
// which shows it working. This includes deadline_exceeded (the call ran out
// of the time its caller gave it, as a short deadline does on a healthy
// instance), resource_exhausted (the instance refuses excess load) and the
// application's codes: canceled, invalid_argument, not_found,
// already_exists, permission_denied, failed_precondition, aborted,
// out_of_range, unimplemented, data_loss and unauthenticated. (finish
// reports calls that ended with the caller's context or deadline_exceeded
// to the breaker as neither success nor failure.)
func breakerFailure(ctx context.Context, err error) bool {
	if transportFailure(ctx, err) {
		return true
	}
	if err == nil || errors.Is(err, io.EOF) || ctx.Err() != nil {
		return false
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeInternal, connect.CodeUnknown:
		return true
	}
	return false
}
