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

// NewHTTPClient returns an HTTP client with the settings of the default
// client of Concord's rpc.NewConn (rpc/client.go, defaultHTTPClient):
// HTTP/2 over TLS and h2c with prior knowledge over cleartext, so every
// cleartext call is h2c. The raw connect-go rows use it so that they differ
// from the Concord rows only in what Concord adds.
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
