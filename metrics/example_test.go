package metrics_test

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
