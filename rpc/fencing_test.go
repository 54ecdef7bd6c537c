package rpc_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/coord/lock"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/rpc"
)

// fencedGreeter greets with the fencing token it was admitted with, for
// the resource named in the request, and logs when each call starts and
// ends. A name "<resource>|<duration>" sleeps that long; "<resource>|hold"
// waits until hold is closed (or the call ends).
type fencedGreeter struct {
	testGreeter
	hold chan struct{}
	mu   sync.Mutex
	log  []string
}

func (g *fencedGreeter) Greet(ctx context.Context, req *greeterv1.GreetRequest) (*greeterv1.GreetResponse, error) {
	resource, pause, _ := strings.Cut(req.GetName(), "|")
	tok, ok := rpc.FencingToken(ctx, resource)
	g.record(fmt.Sprintf("start:%d", tok))
	switch {
	case pause == "hold":
		select {
		case <-g.hold:
		case <-ctx.Done():
		}
	case pause != "":
		d, _ := time.ParseDuration(pause)
		time.Sleep(d)
	}
	g.record(fmt.Sprintf("end:%d", tok))
	return &greeterv1.GreetResponse{Greeting: fmt.Sprintf("%d %v", tok, ok)}, nil
}

// GreetMany greets each name (a resource) with the token admitted for it.
func (g *fencedGreeter) GreetMany(ctx context.Context, req *greeterv1.GreetManyRequest, stream greeterv1connect.GreeterServiceGreetManyServerStream) error {
	g.record("stream")
	for _, resource := range req.GetNames() {
		tok, ok := rpc.FencingToken(ctx, resource)
		if err := stream.Send(&greeterv1.GreetManyResponse{Greeting: fmt.Sprintf("%d %v", tok, ok)}); err != nil {
			return err
		}
	}
	return nil
}

// logged returns a copy of the log.
func (g *fencedGreeter) logged() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.log)
}

func (g *fencedGreeter) record(s string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.log = append(g.log, s)
}

// fencedServer serves the fenced greeter, whose Greet requires a fencing
// token, checked by a real Guard over Badger that verifies tokens against
// the locks of a real embedded node.
type fencedServer struct {
	g      *fencedGreeter
	client greeterv1connect.GreeterServiceClient
	url    string
	node   *coord.Node
	guard  *lock.Guard
}

// startFencedServer fences Greet and the procedures in alsoFenced.
func startFencedServer(t *testing.T, alsoFenced ...string) *fencedServer {
	t.Helper()
	node := nodetest.Open(t)
	store, err := localstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	guard := lock.NewGuard(store, lock.FromNode(node))
	srv := quietServer(rpc.WithFencingGuard(guard))
	g := &fencedGreeter{hold: make(chan struct{})}
	policy := greeterv1concord.GreeterServicePolicy()
	for _, p := range append([]string{greeterv1connect.GreeterServiceGreetProcedure}, alsoFenced...) {
		policy.Method(p).Fencing = &rpc.FencingPolicy{Required: true}
	}
	srv.RegisterService(policy, func(s *connect.Server) { greeterv1connect.RegisterGreeterServiceHandler(s, g) })
	ts := startServer(t, srv, nil)
	conn := rpc.NewConn(ts.url, rpc.WithFencing())
	t.Cleanup(func() { _ = conn.Close() })
	return &fencedServer{g: g, client: greeterv1concord.NewGreeterServiceClient(conn), url: ts.url, node: node, guard: guard}
}

// grant locks name on the server's node and returns the Mutex (held) and
// its token.
func (fs *fencedServer) grant(t *testing.T, name string) (*lock.Mutex, uint64) {
	t.Helper()
	m := lock.NewMutex(lock.FromNode(fs.node), name)
	tok, err := m.Lock(nodetest.Within(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Unlock(context.Background()) })
	return m, tok
}

// post sends a Connect JSON call by hand with the given fencing header
// values and returns the HTTP status.
func post(t *testing.T, url, procedure, body string, fencing ...string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url+procedure, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for _, v := range fencing {
		req.Header.Add(rpc.FencingHeader, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func TestFencingInterceptor(t *testing.T) {
	fs := startFencedServer(t)
	ctx := t.Context()
	greet := func(ctx context.Context, name string) (string, error) {
		res, err := fs.client.Greet(ctx, &greeterv1.GreetRequest{Name: name})
		return res.GetGreeting(), err
	}
	if _, err := greet(ctx, "orders/42"); codeOf(t, err) != connect.CodeFailedPrecondition {
		t.Fatalf("call without a required token: %v", err)
	}
	if _, err := fs.client.Shout(ctx, &greeterv1.ShoutRequest{Name: "x"}); err != nil {
		t.Fatalf("call without a token to an unfenced method: %v", err)
	}
	m1, t1 := fs.grant(t, "orders/42")
	if got, err := greet(rpc.WithFencingToken(ctx, "orders/42", t1), "orders/42"); err != nil || got != fmt.Sprintf("%d true", t1) {
		t.Fatalf("current token %d: %q, %v", t1, got, err)
	}
	if err := m1.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	_, t2 := fs.grant(t, "orders/42")
	steps := []struct {
		token uint64
		code  connect.Code // 0: ok
	}{{t2, 0}, {t1, connect.CodeFailedPrecondition}, {t2, 0}, {math.MaxUint64, connect.CodeFailedPrecondition}, {t2 + 1, connect.CodeFailedPrecondition}, {t2, 0}}
	for _, s := range steps {
		got, err := greet(rpc.WithFencingToken(ctx, "orders/42", s.token), "orders/42")
		switch {
		case s.code == 0 && err != nil:
			t.Fatalf("token %d: %v", s.token, err)
		case s.code == 0 && got != fmt.Sprintf("%d true", s.token):
			t.Fatalf("token %d: handler saw %q", s.token, got)
		case s.code != 0 && codeOf(t, err) != s.code:
			t.Fatalf("token %d: %v, want %v", s.token, err, s.code)
		}
	}
	// Resource names with reserved characters round-trip; tokens are per
	// resource, and several ride on one call.
	odd := "a=b"
	_, t3 := fs.grant(t, odd)
	ctx2 := rpc.WithFencingToken(rpc.WithFencingToken(ctx, odd, t3), "orders/42", t2)
	if got, err := greet(ctx2, odd); err != nil || got != fmt.Sprintf("%d true", t3) {
		t.Fatalf("odd resource: %q, %v", got, err)
	}
	ctx3 := rpc.WithFencingToken(rpc.WithFencingToken(ctx, odd, t3), "orders/42", t1)
	if _, err := greet(ctx3, odd); codeOf(t, err) != connect.CodeFailedPrecondition {
		t.Fatalf("one stale token among two: %v", err)
	}

	// Malformed headers, sent by hand.
	many := make([]string, 17)
	for i := range many {
		many[i] = fmt.Sprintf("r%d=1", i)
	}
	for _, h := range []string{"orders/42", "orders/42=x", "orders/42=0", "=5", "a=1,a=2", "%zz=1",
		strings.Repeat("r", 513) + "=1", strings.Join(many, ",")} {
		if code := post(t, fs.url, greeterv1connect.GreeterServiceGreetProcedure, `{"name":"x"}`, h); code != http.StatusBadRequest {
			t.Errorf("header %.40q: HTTP %d, want 400 (invalid_argument)", h, code)
		}
	}
	// curl-style: one header value.
	if code := post(t, fs.url, greeterv1connect.GreeterServiceGreetProcedure, `{"name":"orders/42"}`, fmt.Sprintf("orders/42=%d", t2)); code != http.StatusOK {
		t.Fatalf("curl-style call: HTTP %d", code)
	}
}

// TestFencingOnlyWhereDeclared sends forged tokens to methods that do not
// declare fencing (an unfenced RPC, gRPC health): they are ignored, so
// nothing is recorded and the real holder is admitted afterwards.
func TestFencingOnlyWhereDeclared(t *testing.T) {
	fs := startFencedServer(t)
	forged := fmt.Sprintf("orders/7=%d", uint64(math.MaxUint64))
	if code := post(t, fs.url, greeterv1connect.GreeterServiceShoutProcedure, `{"name":"x"}`, forged); code != http.StatusOK {
		t.Fatalf("unfenced method with a forged token: HTTP %d, want 200", code)
	}
	if code := post(t, fs.url, "/grpc.health.v1.Health/Check", `{}`, forged); code != http.StatusOK {
		t.Fatalf("health check with a forged token: HTTP %d, want 200", code)
	}
	if h, err := fs.guard.Highest("orders/7"); err != nil || h != 0 {
		t.Fatalf("a token sent to an unfenced method was recorded: %d, %v", h, err)
	}
	_, tok := fs.grant(t, "orders/7")
	if _, err := fs.client.Greet(rpc.WithFencingToken(t.Context(), "orders/7", tok), &greeterv1.GreetRequest{Name: "orders/7"}); err != nil {
		t.Fatalf("the real holder was refused: %v", err)
	}
}

// TestFencingSerializesPerResource starts a slow call with the first
// holder's token, then a call with the next holder's token on the same
// resource: the second is admitted only after the first handler returned,
// so the older holder's write cannot land after the newer one's.
func TestFencingSerializesPerResource(t *testing.T) {
	fs := startFencedServer(t)
	g := fs.g
	ctx := t.Context()
	m1, t1 := fs.grant(t, "r")
	first := make(chan error, 1)
	go func() {
		_, err := fs.client.Greet(rpc.WithFencingToken(ctx, "r", t1), &greeterv1.GreetRequest{Name: "r|300ms"})
		first <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ { // wait until the first call is in its handler
		g.mu.Lock()
		started := len(g.log) > 0
		g.mu.Unlock()
		if started {
			break
		}
		if time.Now().After(deadline) || i > 5000 {
			t.Fatal("first call did not start within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	if err := m1.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	_, t2 := fs.grant(t, "r")
	if _, err := fs.client.Greet(rpc.WithFencingToken(ctx, "r", t2), &greeterv1.GreetRequest{Name: "r"}); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if got, want := strings.Join(g.log, " "), fmt.Sprintf("start:%d end:%d start:%d end:%d", t1, t1, t2, t2); got != want {
		t.Fatalf("calls interleaved: %s, want %s", got, want)
	}
}
