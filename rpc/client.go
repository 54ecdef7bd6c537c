package rpc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
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
	resolver   Resolver
	ownsClient *http.Client
	opts       []connecthttp.Option

	budget *retryBudget

	mu         sync.Mutex
	transports map[string]connect.Transport // by base URL
	breakers   map[breakerKey]*breaker.Breaker
}

type breakerKey struct{ baseURL, procedure string }

// NewConn returns a Conn that sends every call to baseURL, like
// "http://127.0.0.1:8080".
func NewConn(baseURL string, opts ...ClientOption) *Conn {
	return newConn(baseURL, nil, opts)
}

// NewResolvingConn returns a Conn that resolves each service by its
// discovery name through r on every call and spreads calls over the
// instances round-robin.
func NewResolvingConn(r Resolver, opts ...ClientOption) *Conn {
	return newConn("", r, opts)
}

func newConn(baseURL string, r Resolver, opts []ClientOption) *Conn {
	cfg := clientConfig{retryRatio: DefaultRetryRatio, retryReserve: DefaultRetryReserve, now: time.Now}
	for _, o := range opts {
		o.applyClient(&cfg)
	}
	c := &Conn{
		cfg: cfg, baseURL: baseURL, resolver: r,
		budget:     newRetryBudget(cfg.retryRatio, cfg.retryReserve),
		transports: map[string]connect.Transport{},
		breakers:   map[breakerKey]*breaker.Breaker{},
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
	transport := &pickTransport{conn: c, policy: policy}
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

func (c *Conn) transport(baseURL string) connect.Transport {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.transports[baseURL]
	if !ok {
		t = connecthttp.NewTransport(c.cfg.httpClient, baseURL, c.opts...)
		c.transports[baseURL] = t
	}
	return t
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

// pickTransport selects an instance for each call: the fixed URL, or round
// robin over the resolved instances, skipping those whose breaker for the
// method is open.
type pickTransport struct {
	conn   *Conn
	policy *ServicePolicy
	next   atomic.Uint64
}

func (t *pickTransport) NewClientStream(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
	instances := []Instance{{BaseURL: t.conn.baseURL}}
	if r := t.conn.resolver; r != nil {
		var err error
		if instances, err = r.Resolve(ctx, t.policy.DiscoveryName); err != nil {
			return nil, connect.NewError(connect.CodeUnavailable, fmt.Sprintf("no instance of %s: %v", t.policy.DiscoveryName, err)).WithCause(err)
		}
	}
	var bp *BreakerPolicy
	if mp := t.policy.Method(spec.Procedure); mp != nil {
		bp = mp.CircuitBreaker
	}
	n := uint64(len(instances))
	start := t.next.Add(1) - 1
	for i := range n {
		inst := instances[(start+i)%n]
		var br *breaker.Breaker
		if bp != nil {
			br = t.conn.breaker(inst.BaseURL, spec.Procedure, bp)
			if br.Allow() != nil {
				continue
			}
		}
		stream, err := t.conn.transport(inst.BaseURL).NewClientStream(ctx, spec)
		if br == nil {
			return stream, err
		}
		if err != nil {
			br.Done(false)
			return nil, err
		}
		return &breakerStream{ClientStream: stream, br: br}, nil
	}
	return nil, connect.NewError(connect.CodeUnavailable,
		fmt.Sprintf("circuit open for %s on all %d instances of %s", spec.Procedure, n, t.policy.DiscoveryName))
}

// breakerStream reports a call's outcome to its breaker once: a failure on
// the first error that counts as one, a success when the stream ends
// without such an error.
type breakerStream struct {
	connect.ClientStream
	br       *breaker.Breaker
	reported bool
}

func (s *breakerStream) report(err error) {
	if s.reported {
		return
	}
	s.reported = true
	s.br.Done(!breakerFailure(err))
}

func (s *breakerStream) Receive(msg any) error {
	err := s.ClientStream.Receive(msg)
	if err != nil && breakerFailure(err) {
		s.report(err)
	}
	return err
}

func (s *breakerStream) Close() error {
	err := s.ClientStream.Close()
	s.report(nil)
	return err
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
