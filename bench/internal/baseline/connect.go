package baseline

import (
	"net/http"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
)

// RawConnectHandler returns a plain connect-go v2 handler for the greeter:
// no interceptors, compression off, everything else at connect-go's
// defaults.
func RawConnectHandler() http.Handler {
	srv := connect.NewServer()
	greeterv1connect.RegisterGreeterServiceHandler(srv, Greeter{})
	mux := http.NewServeMux()
	connecthttp.Mount(mux, srv, connecthttp.WithCompressors())
	return mux
}

// NewHTTPServer returns an HTTP server for h that speaks HTTP/1.1 and h2c,
// as connect-go's own example and Concord's server do in cleartext.
func NewHTTPServer(h http.Handler) *http.Server {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{Handler: h, Protocols: protocols, ReadHeaderTimeout: 10 * time.Second}
}

// NewHTTPClient returns an HTTP/2 client with the settings of the HTTP/2
// client of Concord's rpc.NewConn (rpc/transport.go, newHTTP2Client):
// HTTP/2 over TLS and h2c with prior knowledge over cleartext, so every
// cleartext call is h2c on one connection. The raw connect-go h2c rows use
// it so that they differ from the Concord h2c rows only in what Concord adds.
func NewHTTPClient() *http.Client {
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{
		Protocols:           protocols,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}}
}

// MaxConnsPerHost is rpc.DefaultMaxConnsPerHost, the bound of Concord's
// HTTP/1.1 pool per host.
const MaxConnsPerHost = 128

// NewHTTP1Client returns an HTTP/1.1-only net/http client with the
// settings of the HTTP/1.1 keep-alive pool of Concord's rpc.NewConn (over
// TLS: rpc/transport.go, newHTTP1Client; in cleartext rpc.NewConn uses a
// client of its own with the same bounds): one connection per call in
// flight, up to MaxConnsPerHost, idle ones kept for reuse. The raw
// connect-go HTTP/1.1 rows use it.
func NewHTTP1Client() *http.Client {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	return &http.Client{Transport: &http.Transport{
		Protocols:           protocols,
		MaxConnsPerHost:     MaxConnsPerHost,
		MaxIdleConnsPerHost: MaxConnsPerHost,
		IdleConnTimeout:     90 * time.Second,
	}}
}
