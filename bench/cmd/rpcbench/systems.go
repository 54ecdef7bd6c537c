package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/concordrpc/concord/bench/internal/baseline"
	"github.com/concordrpc/concord/bench/internal/grpcgreeter"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/metrics"
	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/tracing"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// A system is one row of the throughput table: a server and the client that
// calls it. Every measurement starts a fresh instance in this process on
// 127.0.0.1 and closes it afterwards.
type system struct {
	server   string // what serves
	protocol string // the client's wire protocol and codec
	http     string // the HTTP version on the wire: http1 or h2c
	// variant tells apart rows with the same server, protocol and HTTP
	// version.
	variant string
	// deadline is the deadline the client puts on each call, for the
	// table ("none" if it sets none).
	deadline string
	start    func() (*instance, error)
}

func (s system) key() string {
	k := s.server + " " + s.protocol + " " + s.http
	if s.variant != "" {
		k += " " + s.variant
	}
	return k
}

// instance is a running server with a connected client.
type instance struct {
	call  func(context.Context) error // one Greet, checked
	close func() error
}

const (
	rawConnect = "raw connect-go"
	grpcGo     = "grpc-go"
	concord    = "Concord"

	connectProto = "Connect+proto"
	connectJSON  = "Connect+JSON"
	grpcProto    = "gRPC+proto"
	grpcWebProto = "gRPC-Web+proto"

	http1 = "HTTP/1.1"
	h2c   = "h2c"

	// callTimeout is the greeter's declared timeout (greeter.proto), which
	// Concord's client puts on each call as a deadline.
	callTimeout = 2 * time.Second
	// limitsOn is the variant of the Concord row whose Greet also has a rate
	// limit (a token bucket far above the offered load, so that every call
	// pays for a decision and none is rejected) and a circuit breaker.
	limitsOn = "limits on"
	// withDeadline is the variant of the raw connect-go row whose client
	// sets callTimeout on each call, as Concord's does.
	withDeadline = "2s deadline"
	// observed is the variant of the Concord row with what an App adds to
	// see its calls: Prometheus metrics (package metrics, server and
	// client, as the App installs them) and OpenTelemetry tracing on both
	// sides, with an OTLP
	// exporter configured through the OTEL_* environment (package
	// tracing) but sampling off, so every call pays for its spans'
	// decisions and context propagation, and nothing is exported.
	observed = "metrics + tracing, sampling off"
	// defaultClient is the variant of the Concord rows that use rpc.NewConn's
	// default HTTP version choice (rpc.HTTPVersionAuto); the Concord rows
	// without it force h2c with rpc.WithHTTPVersion(rpc.HTTPVersion2).
	defaultClient = "default client"
)

// systems lists the rows in table order: every protocol on raw connect-go
// over both HTTP versions, grpc-go, then Concord on its default client and
// forced onto h2c.
func systems() []system {
	h2 := rpc.WithHTTPVersion(rpc.HTTPVersion2)
	return []system{
		{server: rawConnect, protocol: connectProto, http: http1, deadline: "none", start: startRawConnect(http1, 0)},
		{server: rawConnect, protocol: connectProto, http: http1, variant: withDeadline, deadline: "2s", start: startRawConnect(http1, callTimeout)},
		{server: rawConnect, protocol: connectJSON, http: http1, deadline: "none", start: startRawConnect(http1, 0, connecthttp.WithProtoJSON())},
		{server: rawConnect, protocol: grpcWebProto, http: http1, deadline: "none", start: startRawConnect(http1, 0, connecthttp.WithGRPCWeb())},
		{server: rawConnect, protocol: grpcProto, http: http1, deadline: "none", start: startRawConnect(http1, 0, connecthttp.WithGRPC())},
		{server: rawConnect, protocol: connectProto, http: h2c, deadline: "none", start: startRawConnect(h2c, 0)},
		{server: rawConnect, protocol: connectProto, http: h2c, variant: withDeadline, deadline: "2s", start: startRawConnect(h2c, callTimeout)},
		{server: rawConnect, protocol: connectJSON, http: h2c, deadline: "none", start: startRawConnect(h2c, 0, connecthttp.WithProtoJSON())},
		{server: rawConnect, protocol: grpcWebProto, http: h2c, deadline: "none", start: startRawConnect(h2c, 0, connecthttp.WithGRPCWeb())},
		{server: rawConnect, protocol: grpcProto, http: h2c, deadline: "none", start: startRawConnect(h2c, 0, connecthttp.WithGRPC())},
		{server: grpcGo, protocol: grpcProto, http: h2c, deadline: "none", start: startGRPC},
		{server: concord, protocol: connectProto, http: http1, variant: defaultClient, deadline: "2s", start: startConcord()},
		{server: concord, protocol: connectProto, http: http1, variant: defaultClient + ", " + limitsOn, deadline: "2s", start: startConcordWith(withLimits)},
		{server: concord, protocol: connectProto, http: http1, variant: defaultClient + ", " + observed, deadline: "2s", start: startConcordObserved},
		{server: concord, protocol: connectJSON, http: http1, variant: defaultClient, deadline: "2s", start: startConcord(rpc.WithJSON())},
		{server: concord, protocol: grpcProto, http: h2c, variant: defaultClient, deadline: "2s", start: startConcord(rpc.WithProtocol(rpc.ProtocolGRPC))},
		{server: concord, protocol: connectProto, http: h2c, deadline: "2s", start: startConcord(h2)},
		{server: concord, protocol: connectJSON, http: h2c, deadline: "2s", start: startConcord(rpc.WithJSON(), h2)},
	}
}

func listen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func connectCall(client greeterv1connect.GreeterServiceClient) func(context.Context) error {
	return func(ctx context.Context) error {
		res, err := client.Greet(ctx, baseline.Request())
		if err != nil {
			return err
		}
		return baseline.Check(res)
	}
}

// startRawConnect serves the greeter on plain connect-go (compression off)
// and calls it through a connect-go client whose HTTP client has the
// settings of Concord's default one for httpVersion (http1 or h2c). If
// timeout is positive, each call gets a deadline of timeout, as Concord's
// client sets from the method's timeout.
func startRawConnect(httpVersion string, timeout time.Duration, opts ...connecthttp.Option) func() (*instance, error) {
	return func() (*instance, error) {
		ln, err := listen()
		if err != nil {
			return nil, err
		}
		hs := baseline.NewHTTPServer(baseline.RawConnectHandler())
		served := make(chan error, 1)
		go func() { served <- hs.Serve(ln) }()
		hc := baseline.NewHTTPClient()
		if httpVersion == http1 {
			hc = baseline.NewHTTP1Client()
		}
		client := greeterv1connect.NewGreeterServiceClient(connect.NewClient(
			connecthttp.NewTransport(hc, "http://"+ln.Addr().String(), opts...)))
		call := connectCall(client)
		if timeout > 0 {
			call = withTimeout(call, timeout)
		}
		return &instance{
			call: call,
			close: func() error {
				hc.CloseIdleConnections()
				err := shutdownHTTP(hs)
				if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
					err = errors.Join(err, serr)
				}
				return err
			},
		}, nil
	}
}

// withTimeout returns call with a deadline of timeout on each call.
func withTimeout(call func(context.Context) error, timeout time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return call(ctx)
	}
}

func shutdownHTTP(hs *http.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return hs.Shutdown(ctx)
}

// startGRPC serves the greeter on grpc-go with its defaults and calls it
// with a grpc-go client over one HTTP/2 (h2c) connection.
func startGRPC() (*instance, error) {
	ln, err := listen()
	if err != nil {
		return nil, err
	}
	gs := grpcgreeter.NewServer()
	served := make(chan error, 1)
	go func() { served <- gs.Serve(ln) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		gs.Stop()
		return nil, err
	}
	return &instance{
		call: func(ctx context.Context) error {
			res := new(greeterv1.GreetResponse)
			if err := cc.Invoke(ctx, grpcgreeter.GreetMethod, baseline.Request(), res); err != nil {
				return err
			}
			return baseline.Check(res)
		},
		close: func() error {
			err := cc.Close()
			gs.GracefulStop()
			return errors.Join(err, <-served)
		},
	}, nil
}

// startConcord serves the greeter on a Concord server with the full default
// chain and a Warn-level logger, and calls it through an rpc.NewConn client
// with opts (none: Concord's default HTTP clients and version choice).
func startConcord(opts ...rpc.ClientOption) func() (*instance, error) {
	return startConcordWith(nil, opts...)
}

// withLimits adds a rate limit and a circuit breaker to Greet's policy.
func withLimits(p *rpc.ServicePolicy) {
	m := p.Method(greeterv1connect.GreeterServiceGreetProcedure)
	m.RateLimit = &rpc.RateLimitPolicy{Algorithm: rpc.TokenBucket, Rate: 1_000_000_000, Per: time.Second, Burst: 1_000_000}
	m.CircuitBreaker = &rpc.BreakerPolicy{FailureRatio: 0.5, MinRequests: 20, Window: 10 * time.Second, OpenFor: 5 * time.Second, HalfOpenProbes: 1}
}

// startConcordWith is startConcord with the greeter's policy edited by edit
// (nil: as generated from greeter.proto).
func startConcordWith(edit func(*rpc.ServicePolicy), opts ...rpc.ClientOption) func() (*instance, error) {
	return startConcordServer(edit, nil, nil, opts...)
}

// startConcordObserved is startConcord with metrics and tracing on (see
// observed): a tracer provider built by tracing.FromEnv from an OTLP
// endpoint on loopback (never reached) and OTEL_TRACES_SAMPLER=always_off.
func startConcordObserved() (*instance, error) {
	for k, v := range map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
		"OTEL_TRACES_SAMPLER":         "always_off",
	} {
		if err := os.Setenv(k, v); err != nil {
			return nil, err
		}
	}
	tp, err := tracing.FromEnv(context.Background())
	if err != nil || tp == nil {
		return nil, fmt.Errorf("tracing from the environment: %v, %w", tp, err)
	}
	reg := prometheus.NewRegistry()
	ms, err := metrics.NewServer(reg, func(string) bool { return true })
	if err != nil {
		return nil, errors.Join(err, tp.Shutdown(context.Background()))
	}
	mc, err := metrics.NewClient(reg)
	if err != nil {
		return nil, errors.Join(err, tp.Shutdown(context.Background()))
	}
	prop := propagation.TraceContext{}
	inst, err := startConcordServer(nil,
		[]rpc.ServerOption{rpc.WithTracing(tp, prop), rpc.WithMetrics(ms.Observe), rpc.WithInterceptors(ms.Interceptor())},
		tp, rpc.WithClientTracing(tp, prop), rpc.WithClientMetrics(mc.Observe))()
	if err != nil {
		return nil, errors.Join(err, tp.Shutdown(context.Background()))
	}
	return inst, nil
}

// startConcordServer serves the greeter, its policy edited by edit (if
// not nil), on a Concord server with the full default chain, a Warn-level
// logger and serverOpts, and calls it through an rpc.NewConn client with
// opts. Closing it shuts tp down, if given.
func startConcordServer(edit func(*rpc.ServicePolicy), serverOpts []rpc.ServerOption, tp *sdktrace.TracerProvider, opts ...rpc.ClientOption) func() (*instance, error) {
	return func() (*instance, error) {
		ln, err := listen()
		if err != nil {
			return nil, err
		}
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		srv := rpc.NewServer(append([]rpc.ServerOption{rpc.WithLogger(logger)}, serverOpts...)...)
		policy := greeterv1concord.GreeterServicePolicy()
		if edit != nil {
			edit(policy)
		}
		srv.RegisterService(policy, func(s *connect.Server) { greeterv1connect.RegisterGreeterServiceHandler(s, baseline.Greeter{}) })
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ctx, ln) }()
		conn := rpc.NewConn("http://"+ln.Addr().String(), opts...)
		client := greeterv1connect.NewGreeterServiceClient(conn.Client(policy))
		return &instance{
			call: connectCall(client),
			close: func() error {
				err := conn.Close()
				cancel()
				if serr := <-served; serr != nil {
					err = errors.Join(err, fmt.Errorf("concord serve: %w", serr))
				}
				if tp != nil {
					err = errors.Join(err, tp.Shutdown(context.Background()))
				}
				return err
			},
		}, nil
	}
}
