package rpc_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/rpc"
)

// testGreeter greets, and misbehaves on request: a name of "panic" panics,
// "slow:<duration>" sleeps (or until the call ends), and "deadline" reports
// the deadline it sees.
type testGreeter struct {
	started chan string  // if set, receives the name of every call that starts
	calls   atomic.Int64 // Greet calls received
	failing atomic.Bool  // if set, Greet fails with unavailable
	failN   atomic.Int64 // Greet fails with unavailable this many more times
}

func (g *testGreeter) Greet(ctx context.Context, req *greeterv1.GreetRequest) (*greeterv1.GreetResponse, error) {
	name := req.GetName()
	g.calls.Add(1)
	if g.started != nil {
		g.started <- name
	}
	if g.failing.Load() || g.failN.Add(-1) >= 0 {
		return nil, connect.NewError(connect.CodeUnavailable, "failing on purpose")
	}
	switch {
	case name == "panic":
		panic("boom: secret detail")
	case name == "deadline":
		dl, ok := ctx.Deadline()
		if !ok {
			return &greeterv1.GreetResponse{Greeting: "none"}, nil
		}
		return &greeterv1.GreetResponse{Greeting: time.Until(dl).Round(time.Second).String()}, nil
	case strings.HasPrefix(name, "slow:"):
		d, err := time.ParseDuration(strings.TrimPrefix(name, "slow:"))
		if err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, "bad duration")
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, connect.NewError(connect.CodeDeadlineExceeded, "gave up")
		}
	}
	return &greeterv1.GreetResponse{Greeting: "Hello, " + name + "!"}, nil
}

func (g *testGreeter) Shout(_ context.Context, req *greeterv1.ShoutRequest) (*greeterv1.ShoutResponse, error) {
	return &greeterv1.ShoutResponse{Shout: strings.ToUpper(req.GetName())}, nil
}

func (g *testGreeter) GreetMany(_ context.Context, req *greeterv1.GreetManyRequest, stream greeterv1connect.GreeterServiceGreetManyServerStream) error {
	for _, n := range req.GetNames() {
		if err := stream.Send(&greeterv1.GreetManyResponse{Greeting: "Hello, " + n + "!"}); err != nil {
			return err
		}
	}
	return nil
}

// testServer is a running rpc.Server on 127.0.0.1.
type testServer struct {
	srv    *rpc.Server
	url    string
	cancel context.CancelFunc
	done   chan error

	stopOnce sync.Once
	stopErr  error // Serve's error, or errStopTimeout
}

// startServer starts srv (with the test greeter registered unless
// register is false) and stops it at cleanup.
func startServer(t *testing.T, srv *rpc.Server, g *testGreeter) *testServer {
	t.Helper()
	if g != nil {
		greeterv1concord.RegisterGreeterService(srv, g)
	}
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{srv: srv, url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(ctx, ln) }()
	waitReady(t, ts.url)
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// errStopTimeout reports a server whose Serve did not return within 30s.
var errStopTimeout = errors.New("server did not stop within 30s")

// stop cancels the server and waits for Serve to return, failing the test
// if it does not within 30s. It returns Serve's error. Call it only from
// the test's goroutine; elsewhere use shutdown.
func (ts *testServer) stop(t *testing.T) error {
	t.Helper()
	err := ts.shutdown()
	if errors.Is(err, errStopTimeout) {
		t.Fatal(err)
	}
	return err
}

// shutdown is stop without t, for any goroutine (t.Fatal from a goroutine
// other than the test's does not stop the test: the test would hang on
// whatever that goroutine was to send). It returns Serve's error or
// errStopTimeout; every call returns the first call's result, after it.
func (ts *testServer) shutdown() error {
	ts.stopOnce.Do(func() {
		ts.cancel()
		select {
		case ts.stopErr = <-ts.done:
		case <-time.After(30 * time.Second):
			ts.stopErr = errStopTimeout
		}
	})
	return ts.stopErr
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; time.Now().Before(deadline) && i < 2000; i++ {
		res, err := http.Get(url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s not ready within 10s", url)
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// connectTransport is a raw connect-go transport to url over h2c.
func connectTransport(url string, opts ...connecthttp.Option) connect.Transport {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	return connecthttp.NewTransport(&http.Client{Transport: &http.Transport{Protocols: protocols}}, url, opts...)
}

func quietServer(opts ...rpc.ServerOption) *rpc.Server {
	return rpc.NewServer(append([]rpc.ServerOption{rpc.WithLogger(discardLogger())}, opts...)...)
}

func codeOf(t *testing.T, err error) connect.Code {
	t.Helper()
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("error %v (%T) is not a *connect.Error", err, err)
	}
	return cerr.Code()
}
