package rpc

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	"github.com/concordrpc/concord/rpc/breaker"
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
	httpClient   connecthttp.HTTPClient
	tls          *tls.Config
	protocol     Protocol
	json         bool
	breaker      connect.ClientInterceptor
	interceptors []connect.ClientInterceptor
	http         []connecthttp.Option
	retryRatio   float64
	retryReserve int
	fallback     Fallback
	now          func() time.Time
	balancing    Balancing
	zone         string
	probation    time.Duration
}

// WithHTTPClient sets the HTTP client. Default: a client with a pooled
// transport that speaks HTTP/2 over TLS and h2c (HTTP/2 with prior
// knowledge) over cleartext, which gRPC and bidirectional streams need.
func WithHTTPClient(c connecthttp.HTTPClient) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.httpClient = c })
}

// WithClientTLS sets the TLS configuration of the default HTTP client.
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
// policies. The client chain, outermost first, is: WithClientInterceptors,
// the method timeout (NewClientDeadlineInterceptor), retries and fallback
// (RetryPolicy, under the retry budget; WithFallback), the breaker slot
// (WithBreaker), then instance selection: round robin over the instances
// whose per-instance, per-method circuit breaker (CircuitBreaker policy)
// admits the call. Each retry attempt selects again, so it goes to another
// instance when there is one. A Conn is safe for concurrent use; share one
// per process and Close it at exit.
type Conn struct {
	cfg        clientConfig
	baseURL    string
	fixed      []Instance // the fixed URL as an instance list
	resolver   Resolver
	ownsClient *http.Client
	opts       []connecthttp.Option

	budget *retryBudget

	mu        sync.Mutex
	endpoints map[string]*endpoint // by base URL
	breakers  map[breakerKey]*breaker.Breaker
}

type breakerKey struct{ baseURL, procedure string }

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
		cfg: cfg, baseURL: baseURL, resolver: r, fixed: []Instance{{ID: baseURL, BaseURL: baseURL}},
		budget:    newRetryBudget(cfg.retryRatio, cfg.retryReserve),
		endpoints: map[string]*endpoint{},
		breakers:  map[breakerKey]*breaker.Breaker{},
	}
	if cfg.httpClient == nil {
		c.ownsClient = defaultHTTPClient(cfg.tls)
		c.cfg.httpClient = c.ownsClient
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
	return c
}

func defaultHTTPClient(tlsConfig *tls.Config) *http.Client {
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{
		Protocols:           protocols,
		TLSClientConfig:     tlsConfig,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}}
}

// Client implements ClientConn.
func (c *Conn) Client(policy *ServicePolicy) *connect.Client {
	var transport connect.Transport = &pickTransport{conn: c, policy: policy}
	if c.resolver == nil && !hasBreaker(policy) {
		transport = c.endpoint(c.baseURL).transport // one instance, nothing to track
	}
	chain := append([]connect.ClientInterceptor{}, c.cfg.interceptors...)
	chain = append(chain, NewClientDeadlineInterceptor(policy.Method), newRetryInterceptor(policy.Method, c.budget, c.cfg.fallback))
	if c.cfg.breaker != nil {
		chain = append(chain, c.cfg.breaker)
	}
	return connect.NewClient(transport, chain...)
}

// Close releases idle connections of the default HTTP client. Calls in
// flight are not interrupted.
func (c *Conn) Close() error {
	if c.ownsClient != nil {
		c.ownsClient.CloseIdleConnections()
	}
	return nil
}

func (c *Conn) endpoint(baseURL string) *endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.endpoints[baseURL]
	if !ok {
		e = &endpoint{transport: connecthttp.NewTransport(c.cfg.httpClient, baseURL, c.opts...)}
		c.endpoints[baseURL] = e
	}
	return e
}

func (c *Conn) breaker(baseURL, procedure string, p *BreakerPolicy) *breaker.Breaker {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := breakerKey{baseURL, procedure}
	b, ok := c.breakers[k]
	if !ok {
		b = breaker.New(breaker.Config{
			FailureRatio: p.FailureRatio, MinRequests: p.MinRequests, Window: p.Window,
			OpenFor: p.OpenFor, HalfOpenProbes: p.HalfOpenProbes, Now: c.cfg.now,
		})
		c.breakers[k] = b
	}
	return b
}

// breakerFailure says whether err counts against an instance.
func breakerFailure(err error) bool {
	if err == nil || errors.Is(err, io.EOF) {
		return false
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeInternal,
		connect.CodeUnknown, connect.CodeResourceExhausted:
		return true
	}
	return false
}
