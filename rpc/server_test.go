package rpc_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"connectrpc.com/connect/v2"
	"connectrpc.com/grpcreflect/v2"
	"google.golang.org/protobuf/proto"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/internal/syncbuf"
	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/rpc/internal/healthv1"
)

func TestProtocols(t *testing.T) {
	ts := startServer(t, quietServer(), &testGreeter{})
	for _, tc := range []struct {
		name string
		opts []rpc.ClientOption
	}{
		{"connect-proto", nil},
		{"connect-json", []rpc.ClientOption{rpc.WithJSON()}},
		{"grpc", []rpc.ClientOption{rpc.WithProtocol(rpc.ProtocolGRPC)}},
		{"grpc-web", []rpc.ClientOption{rpc.WithProtocol(rpc.ProtocolGRPCWeb)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := rpc.NewConn(ts.url, tc.opts...)
			defer conn.Close()
			client := greeterv1concord.NewGreeterServiceClient(conn)
			res, err := client.Greet(t.Context(), &greeterv1.GreetRequest{Name: "Ada"})
			if err != nil {
				t.Fatal(err)
			}
			if res.GetGreeting() != "Hello, Ada!" {
				t.Fatalf("greeting %q", res.GetGreeting())
			}
			stream, err := client.GreetMany(t.Context(), &greeterv1.GreetManyRequest{Names: []string{"a", "b", "c"}})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for i := 0; i < 10; i++ {
				msg, err := stream.Receive()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, msg.GetGreeting())
			}
			if strings.Join(got, ",") != "Hello, a!,Hello, b!,Hello, c!" {
				t.Fatalf("stream got %q", got)
			}
		})
	}
}

func TestValidationError(t *testing.T) {
	ts := startServer(t, quietServer(), &testGreeter{})
	conn := rpc.NewConn(ts.url)
	defer conn.Close()
	client := greeterv1concord.NewGreeterServiceClient(conn)
	_, err := client.Greet(t.Context(), &greeterv1.GreetRequest{Name: ""})
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeInvalidArgument {
		t.Fatalf("got %v, want invalid_argument", err)
	}
	if !strings.Contains(cerr.Message(), "name: must be at least 1 characters") {
		t.Fatalf("message %q does not name the violation", cerr.Message())
	}
	var found bool
	for _, d := range cerr.Details() {
		if d.Type != "buf.validate.Violations" {
			continue
		}
		var v validate.Violations
		if err := proto.Unmarshal(d.Value, &v); err != nil {
			t.Fatal(err)
		}
		found = len(v.GetViolations()) == 1 && v.GetViolations()[0].GetRuleId() == "string.min_len"
	}
	if !found {
		t.Fatalf("no buf.validate.Violations detail with string.min_len in %v", cerr.Details())
	}
}

func TestPanicRecovery(t *testing.T) {
	var logs syncbuf.Buffer
	srv := rpc.NewServer(rpc.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	ts := startServer(t, srv, &testGreeter{})
	conn := rpc.NewConn(ts.url)
	defer conn.Close()
	client := greeterv1concord.NewGreeterServiceClient(conn)
	_, err := client.Greet(t.Context(), &greeterv1.GreetRequest{Name: "panic"})
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeInternal {
		t.Fatalf("got %v, want internal", err)
	}
	if strings.Contains(cerr.Message(), "secret") || strings.Contains(cerr.Message(), "goroutine") {
		t.Fatalf("panic detail leaked to the client: %q", cerr.Message())
	}
	if !strings.Contains(logs.String(), "boom: secret detail") || !strings.Contains(logs.String(), "goroutine") {
		t.Fatalf("panic and stack not logged:\n%s", logs.String())
	}
	// The server stays healthy.
	if _, err := client.Greet(t.Context(), &greeterv1.GreetRequest{Name: "after"}); err != nil {
		t.Fatalf("call after panic: %v", err)
	}
}

func TestMethodTimeout(t *testing.T) {
	ts := startServer(t, quietServer(), &testGreeter{})
	conn := rpc.NewConn(ts.url)
	defer conn.Close()
	client := greeterv1concord.NewGreeterServiceClient(conn)

	// Greet declares timeout "2s": a caller without a deadline gets it, and
	// the server sees it.
	res, err := client.Greet(t.Context(), &greeterv1.GreetRequest{Name: "deadline"})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetGreeting() != "2s" {
		t.Fatalf("server saw deadline %q, want 2s", res.GetGreeting())
	}
	// A shorter caller deadline wins and is propagated.
	ctx, cancel := context.WithTimeout(t.Context(), 1*time.Second)
	defer cancel()
	res, err = client.Greet(ctx, &greeterv1.GreetRequest{Name: "deadline"})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetGreeting() != "1s" {
		t.Fatalf("server saw deadline %q, want 1s", res.GetGreeting())
	}
	// The server enforces the method timeout even when a raw client sets a
	// longer one.
	raw := connect.NewClient(connectTransport(ts.url))
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var out greeterv1.GreetResponse
	start := time.Now()
	err = raw.CallUnary(ctx, greetSpec(), &greeterv1.GreetRequest{Name: "slow:5s"}, &out)
	if code := connect.CodeOf(err); code != connect.CodeDeadlineExceeded {
		t.Fatalf("got %v, want deadline_exceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 4*time.Second {
		t.Fatalf("call took %v; the 2s method timeout was not enforced", elapsed)
	}
}

func TestHealth(t *testing.T) {
	srv := quietServer(rpc.WithReadinessGates("coordination"))
	greeterv1concord.RegisterGreeterService(srv, &testGreeter{})
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	url := "http://" + ln.Addr().String()
	defer func() {
		cancel()
		<-done
	}()
	waitStatus(t, url+"/healthz", http.StatusOK)
	body := waitStatus(t, url+"/readyz", http.StatusServiceUnavailable)
	if !strings.Contains(body, "coordination: starting") {
		t.Fatalf("readyz body %q does not say why", body)
	}
	client := connect.NewClient(connectTransport(url))
	check := func(service string) (healthv1.HealthCheckResponse_ServingStatus, error) {
		var res healthv1.HealthCheckResponse
		err := client.CallUnary(t.Context(), connect.Spec{Procedure: "/grpc.health.v1.Health/Check", StreamType: connect.StreamTypeUnary},
			&healthv1.HealthCheckRequest{Service: service}, &res)
		return res.GetStatus(), err
	}
	if st, err := check(""); err != nil || st != healthv1.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("before ready: %v %v", st, err)
	}
	srv.SetReady("coordination")
	waitStatus(t, url+"/readyz", http.StatusOK)
	for _, svc := range []string{"", "greeter.v1.GreeterService"} {
		if st, err := check(svc); err != nil || st != healthv1.HealthCheckResponse_SERVING {
			t.Fatalf("check %q: %v %v", svc, st, err)
		}
	}
	if _, err := check("no.such.Service"); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("unknown service: %v, want not_found", err)
	}
	// Watch reports changes.
	stream, err := client.CallServerStream(t.Context(), connect.Spec{Procedure: "/grpc.health.v1.Health/Watch", StreamType: connect.StreamTypeServer},
		&healthv1.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var res healthv1.HealthCheckResponse
	if err := stream.Receive(&res); err != nil || res.GetStatus() != healthv1.HealthCheckResponse_SERVING {
		t.Fatalf("watch first: %v %v", res.GetStatus(), err)
	}
	srv.SetNotReady("coordination", "lost quorum")
	if err := stream.Receive(&res); err != nil || res.GetStatus() != healthv1.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch second: %v %v", res.GetStatus(), err)
	}
	if body := waitStatus(t, url+"/readyz", http.StatusServiceUnavailable); !strings.Contains(body, "lost quorum") {
		t.Fatalf("readyz body %q", body)
	}
}

func TestReflection(t *testing.T) {
	ts := startServer(t, quietServer(), &testGreeter{})
	client := grpcreflect.NewClient(connect.NewClient(connectTransport(ts.url)))
	stream := client.NewStream(t.Context())
	defer stream.Close()
	names, err := stream.ListServices()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"greeter.v1.GreeterService": false, "grpc.health.v1.Health": false, "grpc.reflection.v1.ServerReflection": false}
	for _, n := range names {
		if _, ok := want[string(n)]; ok {
			want[string(n)] = true
		}
	}
	for n, ok := range want {
		if !ok {
			t.Errorf("reflection does not list %s (got %v)", n, names)
		}
	}
	files, err := stream.FileContainingSymbol("greeter.v1.GreeterService")
	if err != nil || len(files) == 0 {
		t.Fatalf("FileContainingSymbol: %v %d", err, len(files))
	}
	if _, err := stream.FileContainingSymbol("grpc.health.v1.Health"); err != nil {
		t.Fatalf("health service not describable: %v", err)
	}
}

func TestCORS(t *testing.T) {
	ts := startServer(t, quietServer(rpc.WithCORS(rpc.CORS{AllowedOrigins: []string{"https://app.example"}})), &testGreeter{})
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, ts.url+"/greeter.v1.GreeterService/Greet", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type,connect-protocol-version")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	res := preflight("https://app.example")
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Connect-Protocol-Version") {
		t.Fatalf("allowed preflight: %d %v", res.StatusCode, res.Header)
	}
	if res := preflight("https://evil.example"); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("disallowed origin got CORS headers: %v", res.Header)
	}
	req, _ := http.NewRequest(http.MethodPost, ts.url+"/greeter.v1.GreeterService/Greet", strings.NewReader(`{"name":"web"}`))
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Content-Type", "application/json")
	got, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got.Body.Close()
	if got.StatusCode != http.StatusOK || !strings.Contains(got.Header.Get("Access-Control-Expose-Headers"), "Grpc-Status") {
		t.Fatalf("actual request: %d %v", got.StatusCode, got.Header)
	}
}

func TestGracefulShutdown(t *testing.T) {
	started := make(chan string, 16)
	srv := quietServer(rpc.WithDrain(200*time.Millisecond, 10*time.Second))
	ts := startServer(t, srv, &testGreeter{started: started})
	conn := rpc.NewConn(ts.url)
	defer conn.Close()
	client := greeterv1concord.NewGreeterServiceClient(conn)

	const inflight = 8
	var wg sync.WaitGroup
	errs := make(chan error, inflight)
	for i := 0; i < inflight; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := client.Greet(context.Background(), &greeterv1.GreetRequest{Name: "slow:700ms"})
			errs <- err
		}()
	}
	for i := 0; i < inflight; i++ {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("calls did not start")
		}
	}
	stopped := make(chan error, 1)
	go func() { stopped <- ts.shutdown() }() // not ts.stop: no t.Fatal off the test goroutine
	// Readiness turns false at once, while calls still run.
	waitStatus(t, ts.url+"/readyz", http.StatusServiceUnavailable)
	if ready, why := srv.Ready(); ready || why != "draining" {
		t.Fatalf("Ready() = %v %q during drain", ready, why)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("in-flight call failed during drain: %v", err)
		}
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Serve returned %v after a clean drain", err)
	}
	// After the drain the listener is closed.
	if _, err := http.Get(ts.url + "/healthz"); err == nil {
		t.Fatal("server still accepts connections after shutdown")
	}
}

func TestDrainTimeout(t *testing.T) {
	started := make(chan string, 1)
	srv := quietServer(rpc.WithDrain(0, 300*time.Millisecond))
	ts := startServer(t, srv, &testGreeter{started: started})
	raw := connect.NewClient(connectTransport(ts.url))
	callErr := make(chan error, 1)
	go func() {
		var out greeterv1.GreetResponse
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		callErr <- raw.CallUnary(ctx, greetSpec(), &greeterv1.GreetRequest{Name: "slow:1m"}, &out)
	}()
	<-started
	if err := ts.stop(t); !errors.Is(err, rpc.ErrDrainTimeout) {
		t.Fatalf("Serve returned %v, want ErrDrainTimeout", err)
	}
	select {
	case err := <-callErr:
		if err == nil {
			t.Fatal("call cut off at the drain deadline succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("call still running 10s after the drain deadline")
	}
}

func TestRegistrationErrors(t *testing.T) {
	srv := quietServer()
	greeterv1concord.RegisterGreeterService(srv, &testGreeter{})
	greeterv1concord.RegisterGreeterService(srv, &testGreeter{})
	err := srv.Serve(t.Context(), listen(t))
	if err == nil || !strings.Contains(err.Error(), "greeter.v1.GreeterService registered twice") {
		t.Fatalf("Serve: %v", err)
	}
}

func TestResolvingConn(t *testing.T) {
	ga, gb := &testGreeter{started: make(chan string, 16)}, &testGreeter{started: make(chan string, 16)}
	a := startServer(t, quietServer(), ga)
	b := startServer(t, quietServer(), gb)
	conn := rpc.NewResolvingConn(rpc.NewStaticResolver(map[string][]string{"greeter": {a.url, b.url}}),
		rpc.WithBalancing(rpc.BalanceRoundRobin))
	defer conn.Close()
	client := greeterv1concord.NewGreeterServiceClient(conn)
	for i := 0; i < 10; i++ {
		if _, err := client.Greet(t.Context(), &greeterv1.GreetRequest{Name: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if len(ga.started) != 5 || len(gb.started) != 5 {
		t.Fatalf("round robin sent %d and %d calls, want 5 and 5", len(ga.started), len(gb.started))
	}
	// With one instance gone, the first call that reaches the dead one fails
	// to connect (Shout has no retry policy) and ejects it; later calls go
	// to the live one. Greet is retried on unavailable, on the live one.
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}
	shoutOK, greetOK := 0, 0
	for i := 0; i < 4; i++ {
		if _, err := client.Shout(t.Context(), &greeterv1.ShoutRequest{Name: "x"}); err == nil {
			shoutOK++
		}
	}
	for i := 0; i < 4; i++ {
		if _, err := client.Greet(t.Context(), &greeterv1.GreetRequest{Name: "x"}); err == nil {
			greetOK++
		}
	}
	if shoutOK < 3 || greetOK != 4 {
		t.Fatalf("over one live and one dead instance: Shout %d/4, Greet %d/4 succeeded; want at least 3 and 4", shoutOK, greetOK)
	}
	// A service the resolver does not know is unavailable, with the reason.
	unknown := rpc.NewResolvingConn(rpc.NewStaticResolver(nil))
	defer unknown.Close()
	_, err := greeterv1concord.NewGreeterServiceClient(unknown).Greet(t.Context(), &greeterv1.GreetRequest{Name: "x"})
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeUnavailable || !strings.Contains(cerr.Message(), "no instance of greeter") {
		t.Fatalf("unknown service: %v", err)
	}
}

// Helpers.

func greetSpec() connect.Spec {
	return connect.Spec{Procedure: "/greeter.v1.GreeterService/Greet", StreamType: connect.StreamTypeUnary}
}

func waitStatus(t *testing.T, url string, want int) string {
	t.Helper()
	var last string
	for i := 0; i < 400; i++ {
		res, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			last = string(body)
			if res.StatusCode == want {
				return last
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not answer %d within 4s (last body %q)", url, want, last)
	return ""
}
