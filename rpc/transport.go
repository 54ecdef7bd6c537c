package rpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
)

// HTTPVersion selects which HTTP version the calls of a Conn's default HTTP
// client use (WithHTTPVersion). It has no effect with WithHTTPClient, whose
// client decides.
type HTTPVersion uint8

// The HTTP version policies.
const (
	// HTTPVersionAuto is the default. In cleartext, Connect and gRPC-Web
	// unary and server-streaming calls go over HTTP/1.1 on a pool of
	// keep-alive connections (Concord's own client, which writes each
	// request and reads its response on the calling goroutine; bounded by
	// WithMaxConnsPerHost, idle connections closed after
	// DefaultIdleConnTimeout, and one the server closed while idle is
	// dropped before reuse), and gRPC calls and client and bidirectional
	// streams over h2c (HTTP/2 with prior knowledge): gRPC is defined on
	// HTTP/2 (grpc-go servers refuse anything else), a bidirectional stream
	// needs a full-duplex connection, and client streams, which connect-go
	// sends the same way, stay with them (not measured on HTTP/1.1). Over
	// TLS every call uses what ALPN negotiates, HTTP/2 with Concord's
	// server; HTTP/1.1 over TLS was not measured.
	//
	// Why: on loopback on a 2-core machine, Go's HTTP/1.1 client and server
	// spend less CPU per unary call than their HTTP/2 path (no frame
	// scheduling, flow control or stream bookkeeping; one write each way).
	// In one rpcbench run (BENCHMARKS.md, "RPC over HTTP/1.1 and HTTP/2"),
	// raw connect-go's Connect+proto calls over HTTP/1.1 did 1.16x, 1.44x
	// and 1.17x the calls per second of h2c at concurrency 1, 8 and 64, and
	// Concord's full chain 1.82x, 1.47x and 1.42x; serial calls spent 23%
	// less CPU. The price is one TCP connection per call in flight, bounded
	// by WithMaxConnsPerHost.
	HTTPVersionAuto HTTPVersion = iota
	// HTTPVersion1 is HTTPVersionAuto with HTTP/1.1 for Connect and
	// gRPC-Web unary and server-streaming calls over TLS too.
	HTTPVersion1
	// HTTPVersion2 sends every call over HTTP/2: h2c in cleartext, ALPN over
	// TLS. Every call to an instance shares one connection.
	HTTPVersion2
)

// String returns the policy's name.
func (v HTTPVersion) String() string {
	switch v {
	case HTTPVersionAuto:
		return "auto"
	case HTTPVersion1:
		return "HTTP/1.1"
	case HTTPVersion2:
		return "HTTP/2"
	}
	return "HTTPVersion(?)"
}

// Defaults of the HTTP/1.1 pool of the default HTTP client.
const (
	// DefaultMaxConnsPerHost bounds the HTTP/1.1 connections to one
	// instance: one carries one call at a time, so it is also the number of
	// calls in flight to the instance over HTTP/1.1. Calls beyond it wait
	// for a connection to come free (within their deadline). 128 is twice
	// the highest concurrency the benchmarks measure.
	DefaultMaxConnsPerHost = 128
	// DefaultIdleConnTimeout closes a pooled connection that has been idle
	// this long, below the server's DefaultIdleTimeout so that the client,
	// not the server, ends idle connections.
	DefaultIdleConnTimeout = 90 * time.Second
)

// WithHTTPVersion selects the HTTP version of the default HTTP client's
// calls. Default: HTTPVersionAuto.
func WithHTTPVersion(v HTTPVersion) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.httpVersion = v })
}

// WithMaxConnsPerHost bounds the default HTTP client's HTTP/1.1 connections
// to each instance, and so the calls in flight to it over HTTP/1.1; idle
// connections are kept up to the same number. Default:
// DefaultMaxConnsPerHost. n < 1 means the default.
func WithMaxConnsPerHost(n int) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.maxConnsPerHost = n })
}

// httpClients are the HTTP clients a Conn sends calls with: http1 for the
// calls that go over HTTP/1.1 (nil when none do), http2 for the rest.
type httpClients struct {
	http1, http2 connecthttp.HTTPClient
	owned        []interface{ CloseIdleConnections() } // to close idle connections of at Close
}

// newHTTPClients builds the clients of cfg: the one WithHTTPClient gave for
// every call, or the default clients of cfg's HTTP version policy.
func newHTTPClients(cfg *clientConfig) httpClients {
	if cfg.httpClient != nil {
		return httpClients{http2: cfg.httpClient}
	}
	h2 := newHTTP2Client(cfg.tls)
	hc := httpClients{http2: h2, owned: []interface{ CloseIdleConnections() }{h2}}
	if cfg.httpVersion == HTTPVersion2 || (cfg.tls != nil && cfg.httpVersion == HTTPVersionAuto) {
		return hc
	}
	maxConns := cfg.maxConnsPerHost
	if maxConns < 1 {
		maxConns = DefaultMaxConnsPerHost
	}
	if cfg.tls == nil {
		// Cleartext: Concord's own HTTP/1.1 client (h1Client).
		h1 := newH1Client(maxConns, DefaultIdleConnTimeout)
		hc.http1 = h1
		hc.owned = append(hc.owned, h1)
		return hc
	}
	h1 := newHTTP1Client(cfg.tls, maxConns)
	hc.http1 = oneWriteClient{h1}
	hc.owned = append(hc.owned, h1)
	return hc
}

// newHTTP2Client returns a client that speaks HTTP/2 over TLS and h2c with
// prior knowledge in cleartext; every call to a host shares one connection.
func newHTTP2Client(tlsConfig *tls.Config) *http.Client {
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{
		Protocols:           protocols,
		TLSClientConfig:     tlsConfig,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     DefaultIdleConnTimeout,
		ForceAttemptHTTP2:   true,
	}}
}

// newHTTP1Client returns a client that speaks only HTTP/1.1, keeping up to
// maxConns connections per host open and idle ones for DefaultIdleConnTimeout.
func newHTTP1Client(tlsConfig *tls.Config, maxConns int) *http.Client {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	return &http.Client{Transport: &http.Transport{
		Protocols:           protocols,
		TLSClientConfig:     tlsConfig,
		MaxConnsPerHost:     maxConns,
		MaxIdleConnsPerHost: maxConns,
		IdleConnTimeout:     DefaultIdleConnTimeout,
	}}
}

// maxOneWriteBody is the largest request body that oneWriteClient sends in
// the same write as the headers: net/http's default write buffer, which
// holds both for a typical unary call.
const maxOneWriteBody = 4 << 10

// oneWriteClient sends a small request's headers and body in one write.
// net/http flushes the headers of a request on their own, a system call and
// a packet more, unless it can see that the body is already in memory (a
// bytes.Reader, maybe in io.NopCloser); connect-go's unary request bodies
// are in memory but of its own type. So the body is copied into a
// bytes.Reader first: a copy of at most maxOneWriteBody bytes and a few
// small allocations against one write and one read per call.
type oneWriteClient struct{ *http.Client }

func (c oneWriteClient) Do(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.ContentLength <= 0 || req.ContentLength > maxOneWriteBody {
		return c.Client.Do(req)
	}
	buf := make([]byte, req.ContentLength)
	_, err := io.ReadFull(req.Body, buf)
	if cerr := req.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	r := *req // the caller's request stays as it was
	r.Body = io.NopCloser(bytes.NewReader(buf))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	return c.Client.Do(&r)
}

// newTransport returns the transport of one instance at baseURL: a
// connecthttp transport per HTTP client, and when there are two, one that
// picks between them per call.
func (c *Conn) newTransport(baseURL string) connect.Transport {
	h2 := connecthttp.NewTransport(c.clients.http2, baseURL, c.opts...)
	if c.clients.http1 == nil || c.cfg.protocol == ProtocolGRPC {
		return h2
	}
	return &versionTransport{
		http1: connecthttp.NewTransport(c.clients.http1, baseURL, c.opts...),
		http2: h2,
	}
}

// versionTransport sends calls that HTTP/1.1 carries well (one request
// message: unary and server-streaming calls) over http1, and client and
// bidirectional streams, which need a full-duplex or long-lived request
// body, over http2.
type versionTransport struct {
	http1, http2 connect.Transport
}

func (t *versionTransport) NewClientStream(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
	if spec.StreamType&connect.StreamTypeClient != 0 {
		return t.http2.NewClientStream(ctx, spec)
	}
	return t.http1.NewClientStream(ctx, spec)
}
