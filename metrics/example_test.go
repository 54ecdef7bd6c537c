package metrics_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/metrics"
	"github.com/concordrpc/concord/rpc"
)

// Server metrics for an rpc.Server wired by hand (an App does this itself
// and serves them at concord.MetricsPath): the hook counts every finished
// call, the interceptor keeps the in-flight gauge. Serve reg with
// promhttp.HandlerFor.
func ExampleNewServer() {
	reg := prometheus.NewRegistry()
	var server *rpc.Server
	m, err := metrics.NewServer(reg, func(p string) bool { return server.Policy(p) != nil })
	if err != nil {
		fmt.Println(err)
		return
	}
	server = rpc.NewServer(rpc.WithMetrics(m.Observe), rpc.WithInterceptors(m.Interceptor()))
	// Register services on server, then Serve it. Here, the report the
	// hook gets for a call of a procedure the server does not know:
	m.Observe(context.Background(), rpc.CallReport{Procedure: "/x.v1.Y/Z", Protocol: "connect", Duration: time.Millisecond})

	families, _ := reg.Gather()
	for _, f := range families {
		if f.GetName() != "concord_rpc_server_calls_total" {
			continue
		}
		for _, c := range f.GetMetric() {
			fmt.Print(f.GetName(), "{")
			for i, l := range c.GetLabel() {
				if i > 0 {
					fmt.Print(",")
				}
				fmt.Printf("%s=%q", l.GetName(), l.GetValue())
			}
			fmt.Println("}", c.GetCounter().GetValue())
		}
	}
	// Output: concord_rpc_server_calls_total{code="ok",procedure="unknown",protocol="connect"} 1
}

// Client metrics for an rpc.Conn wired by hand: the hook sees each call
// once, when it ends, with its retries.
func ExampleNewClient() {
	reg := prometheus.NewRegistry()
	m, err := metrics.NewClient(reg)
	if err != nil {
		fmt.Println(err)
		return
	}
	// rpc.NewResolvingConn(resolver, rpc.WithClientMetrics(m.Observe)) feeds
	// it; here, the report of one call that needed a retry:
	m.Observe(context.Background(), rpc.ClientCallReport{Service: "greeter", Procedure: "/greeter.v1.GreeterService/Greet",
		Protocol: "connect", Duration: 3 * time.Millisecond, Retries: 1})
	families, _ := reg.Gather()
	for _, f := range families {
		if f.GetName() == "concord_rpc_client_retries_total" {
			fmt.Println(f.GetName(), f.GetMetric()[0].GetCounter().GetValue())
		}
	}
	// Output: concord_rpc_client_retries_total 1
}

// Rate-limit and breaker metrics read from a server (and a Conn) when
// scraped: here, the greeter's Shout (3 a second) called ten times in a
// row through the server's handler.
func ExampleNewGovernance() {
	srv := rpc.NewServer(rpc.WithLogger(slog.New(slog.DiscardHandler)))
	greeterv1concord.RegisterGreeterService(srv, greeter.Service{})
	h := srv.Handler()
	for range 10 {
		req := httptest.NewRequest(http.MethodPost, "/greeter.v1.GreeterService/Shout", strings.NewReader(`{"name":"Ada"}`))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewGovernance(metrics.GovernanceSource{Limits: srv.LimitStatus, Shed: srv.ShedCalls}))
	families, _ := reg.Gather()
	counts := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			counts[f.GetName()] += m.GetCounter().GetValue()
		}
	}
	admitted, refused := counts["concord_rpc_limit_admitted_calls_total"], counts["concord_rpc_limit_refused_calls_total"]
	fmt.Println("calls counted:", admitted+refused, "some refused:", refused > 0)
	// Output: calls counted: 10 some refused: true
}
