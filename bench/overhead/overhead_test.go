// Package overhead measures, one piece at a time, what Concord's defaults
// add to a unary call, so that a gap in rpcbench's table can be traced to
// its cause:
//
//	cd bench && go test ./overhead -run '^$' -bench . -benchmem
//
// BenchmarkChain runs the server and client interceptors over connect-go's
// in-process transport, with no HTTP, so each one's cost stands alone.
// BenchmarkLoopback makes serial calls on 127.0.0.1, over HTTP/1.1 (a
// keep-alive pool, as Concord's default client uses for unary Connect
// calls) and over h2c, with Concord's server and client swapped in one side
// at a time; each raw client is net/http's with the bounds of Concord's
// client for the same HTTP version. BenchmarkHTTP1Client compares
// Concord's own HTTP/1.1 client with net/http's.
package overhead

import (
	"context"
	"log/slog"
	"net"
	"os"
	rtmetrics "runtime/metrics"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"connectrpc.com/connect/v2/connectinprocess"
	"github.com/concordrpc/concord/bench/internal/baseline"
	"github.com/concordrpc/concord/bench/internal/cputime"
	"github.com/concordrpc/concord/bench/internal/grpcgreeter"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/metrics"
	"github.com/concordrpc/concord/rpc"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func warnLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func lookup() rpc.PolicyLookup {
	policies := map[string]*rpc.MethodPolicy{}
	p := greeterv1concord.GreeterServicePolicy()
	for i := range p.Methods {
		policies[p.Methods[i].Procedure] = &p.Methods[i]
	}
	return func(procedure string) *rpc.MethodPolicy { return policies[procedure] }
}

func BenchmarkChain(b *testing.B) {
	logger := warnLogger()
	server := map[string]func() connect.ServerInterceptor{
		"logging":  func() connect.ServerInterceptor { return rpc.NewLoggingInterceptor(logger, slog.LevelDebug) },
		"recover":  func() connect.ServerInterceptor { return rpc.NewRecoverInterceptor(logger) },
		"deadline": func() connect.ServerInterceptor { return rpc.NewDeadlineInterceptor(lookup()) },
		"validate": func() connect.ServerInterceptor { return rpc.NewValidateInterceptor(nil, logger) },
		"metrics":  func() connect.ServerInterceptor { return rpc.NewMetricsInterceptor(serverMetrics(b).Observe) },
		// Sampling off, as in rpcbench's metrics + tracing row.
		"tracing": func() connect.ServerInterceptor { return rpc.NewTracingInterceptor(unsampled(b), nil) },
	}
	cases := []struct {
		name   string
		server []string
		client bool // the client deadline interceptor
		// clientTracing adds the client tracing interceptor, sampling off.
		clientTracing bool
	}{
		{name: "none"},
		{name: "server=logging", server: []string{"logging"}},
		{name: "server=recover", server: []string{"recover"}},
		{name: "server=deadline", server: []string{"deadline"}},
		{name: "server=validate", server: []string{"validate"}},
		{name: "server=metrics", server: []string{"metrics"}},
		{name: "server=tracing", server: []string{"tracing"}},
		{name: "client=tracing", clientTracing: true},
		{name: "client=deadline", client: true},
		{name: "server=all", server: []string{"logging", "recover", "deadline", "validate"}},
		{name: "server=all,client=deadline", server: []string{"logging", "recover", "deadline", "validate"}, client: true},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var ics []connect.ServerInterceptor
			for _, name := range tc.server {
				ics = append(ics, server[name]())
			}
			srv := connect.NewServer(ics...)
			greeterv1connect.RegisterGreeterServiceHandler(srv, baseline.Greeter{})
			var cics []connect.ClientInterceptor
			if tc.client {
				cics = append(cics, rpc.NewClientDeadlineInterceptor(lookup()))
			}
			if tc.clientTracing {
				cics = append(cics, rpc.NewClientTracingInterceptor(unsampled(b), nil, rpc.ProtocolConnect))
			}
			client := greeterv1connect.NewGreeterServiceClient(connect.NewClient(connectinprocess.New(srv), cics...))
			call(b, client)
		})
	}
}

// serverMetrics returns Concord's server metrics on a registry of their
// own.
func serverMetrics(b *testing.B) *metrics.Server {
	m, err := metrics.NewServer(prometheus.NewRegistry(), func(string) bool { return true })
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// unsampled returns an SDK tracer provider that samples nothing, shut
// down at the end of b.
func unsampled(b *testing.B) *sdktrace.TracerProvider {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

func BenchmarkLoopback(b *testing.B) {
	cases := []struct {
		name          string
		concordServer []rpc.ServerOption // nil: raw connect-go server
		concordClient bool
		deadline      time.Duration // set on each call's context
	}{
		{name: "server=raw,client=raw"},
		{name: "server=raw,client=raw+deadline", deadline: 2 * time.Second},
		{name: "server=raw,client=concord", concordClient: true},
		{name: "server=concord,client=raw", concordServer: []rpc.ServerOption{}},
		{name: "server=concord,client=raw+deadline", concordServer: []rpc.ServerOption{}, deadline: 2 * time.Second},
		{name: "server=concord,client=concord", concordServer: []rpc.ServerOption{}, concordClient: true},
		{name: "server=concord-novalidate,client=concord", concordServer: []rpc.ServerOption{rpc.WithoutValidation()}, concordClient: true},
		{name: "server=concord-nolog-norecover,client=concord", concordServer: []rpc.ServerOption{rpc.WithoutCallLogging(), rpc.WithoutRecovery()}, concordClient: true},
	}
	for _, http1 := range []bool{true, false} {
		version, concordVersion := "http1", rpc.HTTPVersion1
		if !http1 {
			version, concordVersion = "h2c", rpc.HTTPVersion2
		}
		for _, tc := range cases {
			b.Run(version+"/"+tc.name, func(b *testing.B) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				url := "http://" + ln.Addr().String()
				if tc.concordServer == nil {
					hs := baseline.NewHTTPServer(baseline.RawConnectHandler())
					go hs.Serve(ln)
					b.Cleanup(func() { hs.Close() })
				} else {
					srv := rpc.NewServer(append([]rpc.ServerOption{rpc.WithLogger(warnLogger())}, tc.concordServer...)...)
					greeterv1concord.RegisterGreeterService(srv, baseline.Greeter{})
					ctx, cancel := context.WithCancel(context.Background())
					done := make(chan struct{})
					go func() { defer close(done); srv.Serve(ctx, ln) }()
					b.Cleanup(func() { cancel(); <-done })
				}
				var client greeterv1connect.GreeterServiceClient
				if tc.concordClient {
					conn := rpc.NewConn(url, rpc.WithHTTPVersion(concordVersion))
					b.Cleanup(func() { conn.Close() })
					client = greeterv1concord.NewGreeterServiceClient(conn)
				} else {
					hc := baseline.NewHTTPClient()
					if http1 {
						hc = baseline.NewHTTP1Client()
					}
					b.Cleanup(hc.CloseIdleConnections)
					client = greeterv1connect.NewGreeterServiceClient(connect.NewClient(connecthttp.NewTransport(hc, url)))
				}
				callWithin(b, client, tc.deadline)
			})
		}
	}
}

// BenchmarkGRPCGo is the grpc-go baseline for BenchmarkLoopback: serial
// calls over one HTTP/2 connection on 127.0.0.1.
func BenchmarkGRPCGo(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := grpcgreeter.NewServer()
	go gs.Serve(ln)
	b.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })
	greet := func() {
		res := new(greeterv1.GreetResponse)
		if err := cc.Invoke(context.Background(), grpcgreeter.GreetMethod, baseline.Request(), res); err != nil {
			b.Fatal(err)
		}
		if err := baseline.Check(res); err != nil {
			b.Fatal(err)
		}
	}
	greet()
	b.ReportAllocs()
	cpu := cputime.Process()
	for b.Loop() {
		greet()
	}
	b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N), "cpu-ns/op")
}

// call makes one checked call, then b.N serial calls.
func call(b *testing.B, client greeterv1connect.GreeterServiceClient) {
	b.Helper()
	callWithin(b, client, 0)
}

// callWithin is call with a deadline of timeout on each call, if positive,
// as Concord's client sets from the method's timeout.
func callWithin(b *testing.B, client greeterv1connect.GreeterServiceClient, timeout time.Duration) {
	b.Helper()
	greet := func() {
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if timeout > 0 {
			ctx, cancel = context.WithTimeout(ctx, timeout)
		}
		defer cancel()
		res, err := client.Greet(ctx, baseline.Request())
		if err != nil {
			b.Fatal(err)
		}
		if err := baseline.Check(res); err != nil {
			b.Fatal(err)
		}
	}
	greet() // builds lazy state such as the validator
	b.ReportAllocs()
	cpu := cputime.Process()
	for b.Loop() {
		greet()
	}
	// CPU time of the whole process (client and server) per call: less
	// disturbed by other load on a shared machine than ns/op.
	b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N), "cpu-ns/op")
}

// heapAllocs returns how many heap objects the process has allocated.
func heapAllocs() uint64 {
	s := []rtmetrics.Sample{{Name: "/gc/heap/allocs:objects"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

// BenchmarkObserved is BenchmarkLoopback's Concord server and client on
// HTTP/1.1, plain and with what an App adds to see its calls: server and
// client metrics, tracing on both sides with sampling off, and both
// (rpcbench's "metrics + tracing" row), so that each one's cost shows.
//
// The four setups run side by side in one process, in short alternating
// batches (the order rotating from round to round), each batch's process
// CPU time counted to its setup, so that a change in the machine's speed
// or load during the run falls on all of them alike: on a shared machine
// separate runs differ by more than the costs measured here. Each setup
// reports its cpu-ns/op, its allocs/op (client and server together) and,
// but plain, its ratio to plain (x-plain); plain-again is plain once more,
// whose ratio shows the noise left.
func BenchmarkObserved(b *testing.B) {
	setups := []struct {
		name             string
		metrics, tracing bool
		greet            func() error
		cpu              time.Duration
		allocs           uint64
		calls            int
	}{
		{name: "plain"},
		{name: "metrics", metrics: true},
		{name: "tracing", tracing: true},
		{name: "metrics+tracing", metrics: true, tracing: true},
		{name: "plain-again"}, // a control: its ratio shows the noise floor
	}
	for i := range setups {
		tc := &setups[i]
		var srvOpts []rpc.ServerOption
		var cliOpts []rpc.ClientOption
		if tc.tracing {
			tp := unsampled(b)
			srvOpts = append(srvOpts, rpc.WithTracing(tp, nil))
			cliOpts = append(cliOpts, rpc.WithClientTracing(tp, nil))
		}
		if tc.metrics {
			ms := serverMetrics(b)
			mc, err := metrics.NewClient(prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			srvOpts = append(srvOpts, rpc.WithMetrics(ms.Observe), rpc.WithInterceptors(ms.Interceptor()))
			cliOpts = append(cliOpts, rpc.WithClientMetrics(mc.Observe))
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := rpc.NewServer(append([]rpc.ServerOption{rpc.WithLogger(warnLogger())}, srvOpts...)...)
		greeterv1concord.RegisterGreeterService(srv, baseline.Greeter{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(ctx, ln) }()
		b.Cleanup(func() { cancel(); <-done })
		conn := rpc.NewConn("http://"+ln.Addr().String(), cliOpts...)
		b.Cleanup(func() { conn.Close() })
		client := greeterv1concord.NewGreeterServiceClient(conn)
		tc.greet = func() error {
			res, err := client.Greet(context.Background(), baseline.Request())
			if err == nil {
				err = baseline.Check(res)
			}
			return err
		}
		if err := tc.greet(); err != nil { // builds lazy state such as the validator
			b.Fatal(err)
		}
	}
	const batch = 200
	b.ReportAllocs()
	for round := 0; b.Loop(); round++ {
		for k := range setups {
			tc := &setups[(round+k)%len(setups)]
			allocs, cpu := heapAllocs(), cputime.Process()
			for range batch {
				if err := tc.greet(); err != nil {
					b.Fatal(err)
				}
			}
			tc.cpu += cputime.Process() - cpu
			tc.allocs += heapAllocs() - allocs
			tc.calls += batch
		}
	}
	plain := float64(setups[0].cpu) / float64(setups[0].calls)
	for _, tc := range setups {
		perCall := float64(tc.cpu) / float64(tc.calls)
		b.ReportMetric(perCall, tc.name+"-cpu-ns/op")
		b.ReportMetric(float64(tc.allocs)/float64(tc.calls), tc.name+"-allocs/op")
		if tc.name != "plain" {
			b.ReportMetric(perCall/plain, tc.name+"-x-plain")
		}
	}
}
