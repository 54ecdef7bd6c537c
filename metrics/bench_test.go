package metrics_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/concordrpc/concord/metrics"
	"github.com/concordrpc/concord/rpc"
)

// BenchmarkServerObserve is the metrics hook's cost per call.
func BenchmarkServerObserve(b *testing.B) {
	s, err := metrics.NewServer(prometheus.NewRegistry(), known)
	if err != nil {
		b.Fatal(err)
	}
	r := rpc.CallReport{Procedure: greet, Protocol: "connect", Duration: time.Millisecond, ReceivedBytes: 100, SentBytes: 100}
	b.ReportAllocs()
	for b.Loop() {
		s.Observe(b.Context(), r)
	}
}
