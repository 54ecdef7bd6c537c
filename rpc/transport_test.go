package rpc_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/rpc"
)

// The echo service has the two stream types the greeter lacks: a client
// stream (Collect answers once, after the last request) and a bidirectional
// stream (Chat answers each request). Its messages are the greeter's.
const (
	echoService   = "test.v1.EchoService"
	echoCollect   = "/test.v1.EchoService/Collect"
	echoChat      = "/test.v1.EchoService/Chat"
	echoDiscovery = "echo"
)

var (
	collectSpec = connect.Spec{StreamType: connect.StreamTypeClient, Procedure: echoCollect}
	chatSpec    = connect.Spec{StreamType: connect.StreamTypeBidi, Procedure: echoChat}
)

func echoPolicy() *rpc.ServicePolicy {
	return &rpc.ServicePolicy{Name: echoService, DiscoveryName: echoDiscovery, Methods: []rpc.MethodPolicy{
		{Procedure: echoCollect}, {Procedure: echoChat},
	}}
}

func registerEcho(s *connect.Server) {
	s.Register(
		connect.Method{Spec: collectSpec, Handler: func(_ context.Context, _ connect.Spec, stream connect.ServerStream) error {
			var names string
			for {
				var req greeterv1.GreetRequest
				err := stream.Receive(&req)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return err
				}
				names += req.GetName()
			}
			return stream.Send(&greeterv1.GreetResponse{Greeting: "Hello, " + names + "!"})
		}},
		connect.Method{Spec: chatSpec, Handler: func(_ context.Context, _ connect.Spec, stream connect.ServerStream) error {
			for {
				var req greeterv1.GreetRequest
				err := stream.Receive(&req)
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				if err := stream.Send(&greeterv1.GreetResponse{Greeting: "Hello, " + req.GetName() + "!"}); err != nil {
					return err
				}
			}
		}},
	)
}

// protoServer is an rpc.Server's handler on an http.Server of its own
// (HTTP/1.1 and h2c, as rpc.Server serves cleartext) that records the HTTP
// version of every request by path, and counts accepted connections.
type protoServer struct {
	url      string
	accepted atomic.Int64

	mu     sync.Mutex
	protos map[string][]string // by URL path
}

func startProtoServer(t *testing.T, g *testGreeter) *protoServer {
	t.Helper()
	srv := quietServer()
	greeterv1concord.RegisterGreeterService(srv, g)
	srv.RegisterService(echoPolicy(), registerEcho)
	ln := listen(t)
	ps := &protoServer{url: "http://" + ln.Addr().String(), protos: map[string][]string{}}
	handler := srv.Handler()
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	hs := &http.Server{
		Protocols: protocols,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ps.mu.Lock()
			ps.protos[r.URL.Path] = append(ps.protos[r.URL.Path], r.Proto)
			ps.mu.Unlock()
			handler.ServeHTTP(w, r)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				ps.accepted.Add(1)
			}
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close() })
	return ps
}

// lastProto returns the HTTP version of the last request to path.
func (ps *protoServer) lastProto(t *testing.T, path string) string {
	t.Helper()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.protos[path]
	if len(p) == 0 {
		t.Fatalf("no request to %s", path)
	}
	return p[len(p)-1]
}

// call kinds, each made through a Conn's clients.
func callUnary(ctx context.Context, conn *rpc.Conn) error {
	res, err := greeterv1concord.NewGreeterServiceClient(conn).Greet(ctx, &greeterv1.GreetRequest{Name: "a"})
	if err == nil && res.GetGreeting() != "Hello, a!" {
		err = errors.New("wrong greeting " + res.GetGreeting())
	}
	return err
}

func callServerStream(ctx context.Context, conn *rpc.Conn) error {
	stream, err := greeterv1concord.NewGreeterServiceClient(conn).GreetMany(ctx, &greeterv1.GreetManyRequest{Names: []string{"a", "b"}})
	if err != nil {
		return err
	}
	defer stream.Close()
	n := 0
	for {
		_, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		n++
	}
	if n != 2 {
		return errors.New("wrong number of greetings")
	}
	return nil
}

func callClientStream(ctx context.Context, conn *rpc.Conn) error {
	stream, err := conn.Client(echoPolicy()).CallClientStream(ctx, collectSpec)
	if err != nil {
		return err
	}
	defer stream.Close()
	for _, n := range []string{"a", "b"} {
		if err := stream.Send(&greeterv1.GreetRequest{Name: n}); err != nil {
			return err
		}
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	var res greeterv1.GreetResponse
	if err := stream.Receive(&res); err != nil {
		return err
	}
	if res.GetGreeting() != "Hello, ab!" {
		return errors.New("wrong greeting " + res.GetGreeting())
	}
	return nil
}

func callBidi(ctx context.Context, conn *rpc.Conn) error {
	stream, err := conn.Client(echoPolicy()).CallClientStream(ctx, chatSpec)
	if err != nil {
		return err
	}
	defer stream.Close()
	// Full duplex: each answer arrives before the next request is sent,
	// which HTTP/1.1 cannot carry.
	for _, n := range []string{"a", "b"} {
		if err := stream.Send(&greeterv1.GreetRequest{Name: n}); err != nil {
			return err
		}
		var res greeterv1.GreetResponse
		if err := stream.Receive(&res); err != nil {
			return err
		}
		if res.GetGreeting() != "Hello, "+n+"!" {
			return errors.New("wrong greeting " + res.GetGreeting())
		}
	}
	return stream.CloseSend()
}

// TestHTTPVersionPerCall checks which HTTP version the server sees for each
// kind of call, protocol and HTTP version policy of a Conn's default
// clients, and that WithHTTPClient replaces the choice.
func TestHTTPVersionPerCall(t *testing.T) {
	ps := startProtoServer(t, &testGreeter{})
	const h1, h2 = "HTTP/1.1", "HTTP/2.0"
	greet := greeterv1connect.GreeterServiceGreetProcedure
	greetMany := greeterv1connect.GreeterServiceGreetManyProcedure
	h2cOnly := func() *http.Client {
		protocols := new(http.Protocols)
		protocols.SetUnencryptedHTTP2(true)
		return &http.Client{Transport: &http.Transport{Protocols: protocols}}
	}
	type call struct {
		name string
		do   func(context.Context, *rpc.Conn) error
		path string
		want string
	}
	for _, tc := range []struct {
		name  string
		opts  []rpc.ClientOption
		calls []call
	}{
		{name: "connect default", calls: []call{
			{"unary", callUnary, greet, h1},
			{"server stream", callServerStream, greetMany, h1},
			{"client stream", callClientStream, echoCollect, h2},
			{"bidi", callBidi, echoChat, h2},
		}},
		{name: "connect json default", opts: []rpc.ClientOption{rpc.WithJSON()}, calls: []call{
			{"unary", callUnary, greet, h1},
		}},
		{name: "grpc-web default", opts: []rpc.ClientOption{rpc.WithProtocol(rpc.ProtocolGRPCWeb)}, calls: []call{
			{"unary", callUnary, greet, h1},
			{"server stream", callServerStream, greetMany, h1},
		}},
		{name: "grpc default", opts: []rpc.ClientOption{rpc.WithProtocol(rpc.ProtocolGRPC)}, calls: []call{
			{"unary", callUnary, greet, h2},
			{"server stream", callServerStream, greetMany, h2},
			{"client stream", callClientStream, echoCollect, h2},
			{"bidi", callBidi, echoChat, h2},
		}},
		{name: "connect HTTPVersion1", opts: []rpc.ClientOption{rpc.WithHTTPVersion(rpc.HTTPVersion1)}, calls: []call{
			{"unary", callUnary, greet, h1},
			{"bidi", callBidi, echoChat, h2},
		}},
		{name: "connect HTTPVersion2", opts: []rpc.ClientOption{rpc.WithHTTPVersion(rpc.HTTPVersion2)}, calls: []call{
			{"unary", callUnary, greet, h2},
			{"server stream", callServerStream, greetMany, h2},
		}},
		{name: "connect WithHTTPClient", opts: []rpc.ClientOption{rpc.WithHTTPClient(h2cOnly())}, calls: []call{
			{"unary", callUnary, greet, h2},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := rpc.NewConn(ps.url, tc.opts...)
			defer conn.Close()
			for _, c := range tc.calls {
				if err := c.do(t.Context(), conn); err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if got := ps.lastProto(t, c.path); got != c.want {
					t.Errorf("%s went over %s, want %s", c.name, got, c.want)
				}
			}
		})
	}
}

// TestHTTP1PoolBounded sends bursts of concurrent slow unary calls, more
// than the pool's bound, and checks that every call succeeds, that the
// server never accepts more connections than the bound (later bursts reuse
// the kept-alive ones), and that calls did run in parallel over several
// connections.
func TestHTTP1PoolBounded(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     []rpc.ClientOption
		bound    int
		burst    int
		rounds   int
		slowness string
	}{
		{name: "WithMaxConnsPerHost(4)", opts: []rpc.ClientOption{rpc.WithMaxConnsPerHost(4)}, bound: 4, burst: 40, rounds: 3, slowness: "slow:20ms"},
		{name: "default", bound: rpc.DefaultMaxConnsPerHost, burst: 2*rpc.DefaultMaxConnsPerHost + 10, rounds: 2, slowness: "slow:50ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := startProtoServer(t, &testGreeter{})
			conn := rpc.NewConn(ps.url, tc.opts...)
			defer conn.Close()
			client := greeterv1concord.NewGreeterServiceClient(conn)
			for round := range tc.rounds {
				var wg sync.WaitGroup
				errs := make(chan error, tc.burst)
				for range tc.burst {
					wg.Go(func() {
						_, err := client.Greet(t.Context(), &greeterv1.GreetRequest{Name: tc.slowness})
						errs <- err
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
				}
				if n := ps.accepted.Load(); n > int64(tc.bound) {
					t.Fatalf("round %d: server accepted %d connections, bound %d", round, n, tc.bound)
				}
			}
			if n := ps.accepted.Load(); n < 2 {
				t.Fatalf("server accepted %d connections: the calls did not run in parallel", n)
			}
			if got := ps.lastProto(t, greeterv1connect.GreeterServiceGreetProcedure); got != "HTTP/1.1" {
				t.Fatalf("calls went over %s", got)
			}
		})
	}
}

// TestBalancerSignalsPerVersion checks the balancer's in-flight count of an
// instance while unary calls go over HTTP/1.1 and bidirectional streams
// over HTTP/2 to it, and that the count returns to zero when they end.
func TestBalancerSignalsPerVersion(t *testing.T) {
	g := &testGreeter{started: make(chan string, 8)}
	ps := startProtoServer(t, g)
	conn := rpc.NewResolvingConn(rpc.NewStaticResolver(map[string][]string{
		"greeter": {ps.url}, echoDiscovery: {ps.url},
	}))
	defer conn.Close()
	client := greeterv1concord.NewGreeterServiceClient(conn)
	release := make(chan struct{})
	var wg sync.WaitGroup
	const unary = 3
	for range unary {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			go func() {
				<-release
				cancel()
			}()
			_, _ = client.Greet(ctx, &greeterv1.GreetRequest{Name: "slow:10s"})
		})
	}
	for range unary {
		<-g.started
	}
	// A bidirectional stream, open while the unary calls wait.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := conn.Client(echoPolicy()).CallClientStream(ctx, chatSpec)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&greeterv1.GreetRequest{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	var res greeterv1.GreetResponse
	if err := stream.Receive(&res); err != nil {
		t.Fatal(err)
	}
	if n, _ := conn.InFlight(ps.url); n != unary+1 {
		t.Fatalf("%d calls in flight, want %d", n, unary+1)
	}
	if got := ps.lastProto(t, greeterv1connect.GreeterServiceGreetProcedure); got != "HTTP/1.1" {
		t.Fatalf("unary calls went over %s", got)
	}
	if got := ps.lastProto(t, echoChat); got != "HTTP/2.0" {
		t.Fatalf("bidi stream went over %s", got)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := stream.Receive(&res); !errors.Is(err, io.EOF) {
		t.Fatalf("end of bidi stream: %v", err)
	}
	_ = stream.Close()
	waitInFlight(t, conn, ps.url, unary)
	close(release)
	wg.Wait()
	waitInFlight(t, conn, ps.url, 0)
}
