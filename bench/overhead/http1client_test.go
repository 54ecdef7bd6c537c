package overhead

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/concordrpc/concord/bench/internal/baseline"
	"github.com/concordrpc/concord/bench/internal/cputime"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/rpc"
)

// BenchmarkHTTP1Client compares Concord's default client in cleartext
// (its own HTTP/1.1 client, rpc/h1client.go) with the same Conn over
// net/http's HTTP/1.1 client with the settings Concord's default used
// before it (baseline.NewHTTP1Client), both calling one Concord server:
// serial Greets in alternating batches of 200, each batch's wall time and
// process CPU counted to its client. It reports own/nethttp-wall and
// own/nethttp-cpu.
func BenchmarkHTTP1Client(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := rpc.NewServer(rpc.WithLogger(warnLogger()))
	greeterv1concord.RegisterGreeterService(srv, baseline.Greeter{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-done })
	url := "http://" + ln.Addr().String()
	own := rpc.NewConn(url)
	b.Cleanup(func() { own.Close() })
	hc := baseline.NewHTTP1Client()
	b.Cleanup(hc.CloseIdleConnections)
	nethttp := rpc.NewConn(url, rpc.WithHTTPClient(hc))
	clients := []greeterv1connect.GreeterServiceClient{greeterv1concord.NewGreeterServiceClient(nethttp), greeterv1concord.NewGreeterServiceClient(own)}
	var wall, cpu [2]time.Duration
	for b.Loop() {
		for i, c := range clients {
			start, cs := time.Now(), cputime.Process()
			for range 200 {
				if _, err := c.Greet(context.Background(), baseline.Request()); err != nil {
					b.Fatal(err)
				}
			}
			wall[i] += time.Since(start)
			cpu[i] += cputime.Process() - cs
		}
	}
	b.ReportMetric(float64(wall[1])/float64(wall[0]), "own/nethttp-wall")
	b.ReportMetric(float64(cpu[1])/float64(cpu[0]), "own/nethttp-cpu")
}
