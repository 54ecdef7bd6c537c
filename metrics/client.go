package metrics

import (
	"context"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/concordrpc/concord/rpc"
)

// Client records the calls a Conn's clients make, per upstream service:
//
//   - concord_rpc_client_calls_total{service,protocol,code}
//   - concord_rpc_client_call_duration_seconds{service,protocol,code}, the
//     whole call with its retries
//   - concord_rpc_client_retries_total{service}
//   - concord_rpc_client_request_message_bytes{service,protocol} and
//     concord_rpc_client_response_message_bytes{service,protocol}, the
//     uncompressed size of each call's last message
//
// Calls in flight per service come from the Governance collector, which
// reads them from the Conn at scrape time.
//
// service is the upstream's discovery name from its generated policy (a
// service the binary was built to call), protocol connect, grpc or grpcweb,
// code "ok" or a Connect code name.
// Feed it with rpc.WithClientMetrics(c.Observe). A Client is safe for
// concurrent use.
type Client struct {
	series   sync.Map // clientKey -> *clientSeries: the label lookups, done once per label set
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	reqBytes *prometheus.HistogramVec
	resBytes *prometheus.HistogramVec
}

// NewClient registers the client metrics with reg and returns them. It
// fails if reg refuses a metric.
func NewClient(reg prometheus.Registerer) (*Client, error) {
	c := &Client{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_rpc_client_calls_total",
			Help: "RPC calls made by the process's clients, by upstream service, protocol and code.",
		}, []string{"service", "protocol", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "concord_rpc_client_call_duration_seconds",
			Help:    "Time of each client call, retries and their backoff included, by upstream service and code.",
			Buckets: prometheus.DefBuckets,
		}, []string{"service", "protocol", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_rpc_client_retries_total",
			Help: "Attempts client calls made after their first, by upstream service.",
		}, []string{"service"}),
		reqBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "concord_rpc_client_request_message_bytes",
			Help:    "Uncompressed size of the last request message of each client call.",
			Buckets: messageBuckets,
		}, []string{"service", "protocol"}),
		resBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "concord_rpc_client_response_message_bytes",
			Help:    "Uncompressed size of the last response message of each client call.",
			Buckets: messageBuckets,
		}, []string{"service", "protocol"}),
	}
	for _, col := range []prometheus.Collector{c.calls, c.duration, c.retries, c.reqBytes, c.resBytes} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("metrics: register client metrics: %w", err)
		}
	}
	return c, nil
}

// clientKey is one label set of the per-call client metrics.
type clientKey struct{ service, protocol, code string }

// clientSeries are the metrics of one clientKey, looked up once.
type clientSeries struct {
	calls              prometheus.Counter
	duration           prometheus.Observer
	reqBytes, resBytes prometheus.Observer
	retries            prometheus.Counter
}

// Observe records one finished call: its signature is
// rpc.ClientMetricsHook's.
func (c *Client) Observe(_ context.Context, r rpc.ClientCallReport) {
	k := clientKey{r.Service, protocolLabel(r.Protocol), codeLabel(r.Code)}
	v, ok := c.series.Load(k)
	if !ok {
		// Services come from generated policies, protocols and codes from
		// fixed sets: the cache is bounded.
		v, _ = c.series.LoadOrStore(k, &clientSeries{
			calls:    c.calls.WithLabelValues(k.service, k.protocol, k.code),
			duration: c.duration.WithLabelValues(k.service, k.protocol, k.code),
			reqBytes: c.reqBytes.WithLabelValues(k.service, k.protocol),
			resBytes: c.resBytes.WithLabelValues(k.service, k.protocol),
			retries:  c.retries.WithLabelValues(k.service),
		})
	}
	m := v.(*clientSeries) //nolint:forcetypeassert // the map holds only these
	m.calls.Inc()
	m.duration.Observe(r.Duration.Seconds())
	m.reqBytes.Observe(float64(r.SentBytes))
	m.resBytes.Observe(float64(r.ReceivedBytes))
	if r.Retries > 0 {
		m.retries.Add(float64(r.Retries))
	}
}
