package metrics

import (
	"context"
	"fmt"
	"sync"

	"connectrpc.com/connect/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/concordrpc/concord/rpc"
)

// Server records the calls an rpc.Server serves:
//
//   - concord_rpc_server_calls_total{procedure,protocol,code}
//   - concord_rpc_server_call_duration_seconds{procedure,protocol,code}
//   - concord_rpc_server_calls_in_flight{procedure}
//   - concord_rpc_server_request_message_bytes{procedure,protocol} and
//     concord_rpc_server_response_message_bytes{procedure,protocol}, the
//     uncompressed size of each call's last message.
//
// Calls, durations and sizes come from the metrics hook (Observe, slot 2
// of the rpc.Server chain), so they include calls refused by admission
// and validation. In flight comes from Interceptor, which rpc.Server runs
// among the user interceptors (after admission and validation): it counts
// the calls being handled. A Server is safe for concurrent use.
type Server struct {
	series   sync.Map // serverKey -> *serverSeries: the label lookups, done once per label set
	gauges   sync.Map // procedure label -> prometheus.Gauge (in flight)
	known    func(procedure string) bool
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
	reqBytes *prometheus.HistogramVec
	resBytes *prometheus.HistogramVec
}

// messageBuckets span 64 B to 4 MiB (rpc.DefaultReadMaxBytes) by fours.
var messageBuckets = prometheus.ExponentialBuckets(64, 4, 9)

// NewServer registers the server metrics with reg and returns them.
// known reports whether a procedure is registered (rpc.Server.Policy(p) !=
// nil); any other procedure, but for gRPC health and reflection, is
// labelled "unknown". It fails if reg refuses a metric (one already
// registered under the same name).
func NewServer(reg prometheus.Registerer, known func(procedure string) bool) (*Server, error) {
	s := &Server{
		known: known,
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_rpc_server_calls_total",
			Help: "RPC calls finished by the server, by procedure, protocol and code.",
		}, []string{"procedure", "protocol", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "concord_rpc_server_call_duration_seconds",
			Help:    "Time RPC calls spent in the server's interceptor chain and handler.",
			Buckets: prometheus.DefBuckets,
		}, []string{"procedure", "protocol", "code"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "concord_rpc_server_calls_in_flight",
			Help: "RPC calls past admission and validation whose handler has not returned.",
		}, []string{"procedure"}),
		reqBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "concord_rpc_server_request_message_bytes",
			Help:    "Uncompressed size of the last request message of each call.",
			Buckets: messageBuckets,
		}, []string{"procedure", "protocol"}),
		resBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "concord_rpc_server_response_message_bytes",
			Help:    "Uncompressed size of the last response message of each call.",
			Buckets: messageBuckets,
		}, []string{"procedure", "protocol"}),
	}
	for _, c := range []prometheus.Collector{s.calls, s.duration, s.inFlight, s.reqBytes, s.resBytes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register server metrics: %w", err)
		}
	}
	return s, nil
}

// procedure returns the procedure label of p.
func (s *Server) procedure(p string) string {
	if builtinProcedure(p) || (s.known != nil && s.known(p)) {
		return p
	}
	return unknownLabel
}

// serverKey is one label set of the per-call metrics.
type serverKey struct{ procedure, protocol, code string }

// serverSeries are the metrics of one serverKey, looked up once.
type serverSeries struct {
	calls              prometheus.Counter
	duration           prometheus.Observer
	reqBytes, resBytes prometheus.Observer
}

// Observe records one finished call. Its signature is rpc.MetricsHook's:
// pass s.Observe to rpc.WithMetrics.
func (s *Server) Observe(_ context.Context, r rpc.CallReport) {
	k := serverKey{s.procedure(r.Procedure), protocolLabel(r.Protocol), codeLabel(r.Code)}
	v, ok := s.series.Load(k)
	if !ok {
		// The label sets are bounded (see the package doc), and so is
		// this cache.
		v, _ = s.series.LoadOrStore(k, &serverSeries{
			calls:    s.calls.WithLabelValues(k.procedure, k.protocol, k.code),
			duration: s.duration.WithLabelValues(k.procedure, k.protocol, k.code),
			reqBytes: s.reqBytes.WithLabelValues(k.procedure, k.protocol),
			resBytes: s.resBytes.WithLabelValues(k.procedure, k.protocol),
		})
	}
	m := v.(*serverSeries) //nolint:forcetypeassert // the map holds only these
	m.calls.Inc()
	m.duration.Observe(r.Duration.Seconds())
	m.reqBytes.Observe(float64(r.ReceivedBytes))
	m.resBytes.Observe(float64(r.SentBytes))
}

// Interceptor returns the interceptor that keeps
// concord_rpc_server_calls_in_flight. Install it with rpc.WithInterceptors;
// it counts from where it sits in the chain.
func (s *Server) Interceptor() connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			proc := s.procedure(spec.Procedure)
			v, ok := s.gauges.Load(proc)
			if !ok {
				v, _ = s.gauges.LoadOrStore(proc, s.inFlight.WithLabelValues(proc))
			}
			g := v.(prometheus.Gauge) //nolint:forcetypeassert // the map holds only gauges
			g.Inc()
			defer g.Dec()
			return next(ctx, spec, stream)
		}
	}
}
