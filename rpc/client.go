package rpc

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
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

// WithBreaker fills the circuit-breaker slot of the client chain.
func WithBreaker(ic connect.ClientInterceptor) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.breaker = ic })
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
// the method timeout (NewClientDeadlineInterceptor), the circuit-breaker
// slot (WithBreaker), then the transport. A Conn is safe for concurrent use;
// share one per process and Close it at exit.
type Conn struct {
	cfg        clientConfig
	baseURL    string
	resolver   Resolver
	ownsClient *http.Client
	opts       []connecthttp.Option

	mu         sync.Mutex
	transports map[string]connect.Transport // by base URL
}

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
	var cfg clientConfig
	for _, o := range opts {
		o.applyClient(&cfg)
	}
	c := &Conn{cfg: cfg, baseURL: baseURL, resolver: r, transports: map[string]connect.Transport{}}
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
	var transport connect.Transport
	if c.resolver == nil {
		transport = c.transport(c.baseURL)
	} else {
		transport = &resolvingTransport{conn: c, service: policy.DiscoveryName}
	}
	chain := append([]connect.ClientInterceptor{}, c.cfg.interceptors...)
	chain = append(chain, NewClientDeadlineInterceptor(policy.Method))
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

// resolvingTransport picks an instance of a service for each call.
type resolvingTransport struct {
	conn    *Conn
	service string
	next    atomic.Uint64
}

func (t *resolvingTransport) NewClientStream(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
	instances, err := t.conn.resolver.Resolve(ctx, t.service)
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Sprintf("no instance of %s: %v", t.service, err)).WithCause(err)
	}
	inst := instances[int(t.next.Add(1)-1)%len(instances)]
	return t.conn.transport(inst.BaseURL).NewClientStream(ctx, spec)
}
