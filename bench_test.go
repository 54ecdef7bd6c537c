package concord_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/rpc"
)

// BenchmarkAdmission measures one admission decision of the default
// admission interceptor: a local token bucket, and a cluster-scoped bucket
// that draws batches from a real embedded coordination node (its amortized
// cost, with the store's round trips spread over each batch).
//
//	go test . -run '^$' -bench Admission -benchmem
func BenchmarkAdmission(b *testing.B) {
	ctx := context.Background()
	node, err := coord.Open(ctx, coord.WithDataDir(b.TempDir()), coord.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	defer node.Close()
	store, err := node.LimitStore(ctx)
	if err != nil {
		b.Fatal(err)
	}
	spec := connect.Spec{Procedure: "/bench.v1.Bench/Call", StreamType: connect.StreamTypeUnary}
	next := func(context.Context, connect.Spec, connect.ServerStream) error { return nil }
	for _, scope := range []struct {
		name  string
		scope rpc.Scope
	}{{"local", rpc.ScopeLocal}, {"cluster", rpc.ScopeCluster}} {
		b.Run(scope.name, func(b *testing.B) {
			policy := &rpc.MethodPolicy{Procedure: spec.Procedure, RateLimit: &rpc.RateLimitPolicy{
				Algorithm: rpc.TokenBucket, Rate: 1_000_000_000, Per: time.Second, Burst: 1_000_000, Scope: scope.scope,
			}}
			lookup := func(string) *rpc.MethodPolicy { return policy }
			call := rpc.NewAdmissionInterceptor(lookup, rpc.WithLimiterStore(store))(next)
			if err := call(ctx, spec, nil); err != nil { // warm up: first batch
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := call(ctx, spec, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
