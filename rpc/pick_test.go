package rpc

import (
	"context"
	"testing"
	"time"
)

// BenchmarkResolveAndPick measures what a resolving Conn adds to each call
// over a fixed-URL Conn (which picks nothing): Resolve, matching the answer
// to the Conn's endpoints, and the balancer's choice among three instances,
// for each balancing policy.
//
//	go test ./rpc -run '^$' -bench ResolveAndPick -benchmem
func BenchmarkResolveAndPick(b *testing.B) {
	r := NewStaticResolver(map[string][]string{"svc": {"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"}})
	policy := &ServicePolicy{Name: "svc", DiscoveryName: "svc", Methods: []MethodPolicy{{Procedure: "/svc/M"}}}
	b.Run("fixed_url", func(b *testing.B) {
		// A fixed-URL Conn without breakers hands calls straight to its
		// transport; this is the work it skips, for one instance.
		conn := NewConn("http://127.0.0.1:1")
		defer conn.Close()
		t := &pickTransport{conn: conn, policy: policy}
		b.ReportAllocs()
		for b.Loop() {
			if e, _, _ := t.pick(conn.fixed, "/svc/M", nil, time.Now().UnixNano()); e == nil {
				b.Fatal("no pick")
			}
		}
	})
	for _, bal := range []struct {
		name string
		b    Balancing
	}{{"p2c", BalanceP2C}, {"round_robin", BalanceRoundRobin}} {
		b.Run(bal.name, func(b *testing.B) {
			conn := NewResolvingConn(r, WithBalancing(bal.b))
			defer conn.Close()
			t := &pickTransport{conn: conn, policy: policy}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				insts, err := r.Resolve(ctx, "svc")
				if err != nil {
					b.Fatal(err)
				}
				if e, _, _ := t.pick(conn.track("svc", insts), "/svc/M", nil, time.Now().UnixNano()); e == nil {
					b.Fatal("no pick")
				}
			}
		})
	}
}
