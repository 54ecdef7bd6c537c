package metrics

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/concordrpc/concord/rpc"
)

// Client records the calls a Conn's clients make, per upstream service:
//
//   - concord_rpc_client_calls_total{service,code}
//   - concord_rpc_client_call_duration_seconds{service,code}, the whole
//     call with its retries
//   - concord_rpc_client_retries_total{service}
//
// service is the upstream's discovery name from its generated policy (a
// service the binary was built to call), code "ok" or a Connect code name.
// Feed it with rpc.WithClientMetrics(c.Observe). A Client is safe for
// concurrent use.
type Client struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
}

// NewClient registers the client metrics with reg and returns them. It
// fails if reg refuses a metric.
func NewClient(reg prometheus.Registerer) (*Client, error) {
	c := &Client{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_rpc_client_calls_total",
			Help: "RPC calls made by the process's clients, by upstream service and code.",
		}, []string{"service", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "concord_rpc_client_call_duration_seconds",
			Help:    "Time of each client call, retries and their backoff included, by upstream service and code.",
			Buckets: prometheus.DefBuckets,
		}, []string{"service", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_rpc_client_retries_total",
			Help: "Attempts client calls made after their first, by upstream service.",
		}, []string{"service"}),
	}
	for _, col := range []prometheus.Collector{c.calls, c.duration, c.retries} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("metrics: register client metrics: %w", err)
		}
	}
	return c, nil
}

// Observe records one finished call: its signature is
// rpc.ClientMetricsHook's.
func (c *Client) Observe(_ context.Context, r rpc.ClientCallReport) {
	code := codeLabel(r.Code)
	c.calls.WithLabelValues(r.Service, code).Inc()
	c.duration.WithLabelValues(r.Service, code).Observe(r.Duration.Seconds())
	if r.Retries > 0 {
		c.retries.WithLabelValues(r.Service).Add(float64(r.Retries))
	}
}
