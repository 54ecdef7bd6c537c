package rpc_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/coord/lock"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/rpc"
)

// fencedGreeter greets with the fencing token it was admitted with, for
// the resource named in the request, and logs when each call starts and
// ends.
type fencedGreeter struct {
	testGreeter
	mu  sync.Mutex
	log []string
}

func (g *fencedGreeter) Greet(ctx context.Context, req *greeterv1.GreetRequest) (*greeterv1.GreetResponse, error) {
	resource, pause, _ := strings.Cut(req.GetName(), "|")
	tok, ok := rpc.FencingToken(ctx, resource)
	g.record(fmt.Sprintf("start:%d", tok))
	if pause != "" {
		d, _ := time.ParseDuration(pause)
		time.Sleep(d)
	}
	g.record(fmt.Sprintf("end:%d", tok))
	return &greeterv1.GreetResponse{Greeting: fmt.Sprintf("%d %v", tok, ok)}, nil
}

func (g *fencedGreeter) record(s string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.log = append(g.log, s)
}

func startFencedServer(t *testing.T) (*fencedGreeter, greeterv1connect.GreeterServiceClient, string) {
	t.Helper()
	store, err := localstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	srv := quietServer(rpc.WithInterceptors(rpc.NewFencingInterceptor(lock.NewGuard(store),
		rpc.RequireFencing(greeterv1connect.GreeterServiceGreetProcedure))))
	g := &fencedGreeter{}
	greeterv1concord.RegisterGreeterService(srv, g)
	ts := startServer(t, srv, nil)
	conn := rpc.NewConn(ts.url, rpc.WithFencing())
	t.Cleanup(func() { _ = conn.Close() })
	return g, greeterv1concord.NewGreeterServiceClient(conn), ts.url
}

func TestFencingInterceptor(t *testing.T) {
	_, client, url := startFencedServer(t)
	ctx := t.Context()
	greet := func(ctx context.Context, name string) (string, error) {
		res, err := client.Greet(ctx, &greeterv1.GreetRequest{Name: name})
		return res.GetGreeting(), err
	}
	if _, err := greet(ctx, "orders/42"); codeOf(t, err) != connect.CodeFailedPrecondition {
		t.Fatalf("call without a required token: %v", err)
	}
	if _, err := client.Shout(ctx, &greeterv1.ShoutRequest{Name: "x"}); err != nil {
		t.Fatalf("call without a token to an unfenced method: %v", err)
	}
	steps := []struct {
		token uint64
		code  connect.Code // 0: ok
	}{{5, 0}, {7, 0}, {6, connect.CodeFailedPrecondition}, {7, 0}, {5, connect.CodeFailedPrecondition}, {8, 0}}
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
	odd := "a=b, c%d\n"
	ctx2 := rpc.WithFencingToken(rpc.WithFencingToken(ctx, odd, 3), "orders/42", 8)
	if got, err := greet(ctx2, odd); err != nil || got != "3 true" {
		t.Fatalf("odd resource: %q, %v", got, err)
	}
	ctx3 := rpc.WithFencingToken(rpc.WithFencingToken(ctx, odd, 3), "orders/42", 7)
	if _, err := greet(ctx3, odd); codeOf(t, err) != connect.CodeFailedPrecondition {
		t.Fatalf("one stale token among two: %v", err)
	}

	// Malformed headers, sent by hand.
	for _, h := range []string{"orders/42", "orders/42=x", "orders/42=0", "=5", "a=1,a=2"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+greeterv1connect.GreeterServiceGreetProcedure,
			strings.NewReader(`{"name":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(rpc.FencingHeader, h)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("header %q: HTTP %d, want 400 (invalid_argument)", h, res.StatusCode)
		}
	}
	// curl-style: one header value.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+greeterv1connect.GreeterServiceGreetProcedure,
		strings.NewReader(`{"name":"orders/42"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(rpc.FencingHeader, "orders/42=8")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("curl-style call: HTTP %d", res.StatusCode)
	}
}

// TestFencingSerializesPerResource starts a slow call with token 1, then a
// call with token 2 on the same resource: the second is admitted only after
// the first handler returned, so the older holder's write cannot land after
// the newer one's.
func TestFencingSerializesPerResource(t *testing.T) {
	g, client, _ := startFencedServer(t)
	ctx := t.Context()
	first := make(chan error, 1)
	go func() {
		_, err := client.Greet(rpc.WithFencingToken(ctx, "r", 1), &greeterv1.GreetRequest{Name: "r|300ms"})
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
	if _, err := client.Greet(rpc.WithFencingToken(ctx, "r", 2), &greeterv1.GreetRequest{Name: "r"}); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if got := strings.Join(g.log, " "); got != "start:1 end:1 start:2 end:2" {
		t.Fatalf("calls interleaved: %s", got)
	}
}
