package rpc_test

import (
	"context"
	"strings"
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

// codeGreeter answers every Greet with an error of its code, or when the
// code is 0 holds the call until its context ends.
type codeGreeter struct {
	greeterv1connect.UnimplementedGreeterServiceHandler
	code atomic.Uint32
}

func (g *codeGreeter) Greet(ctx context.Context, _ *greeterv1.GreetRequest) (*greeterv1.GreetResponse, error) {
	code := connect.Code(g.code.Load())
	if code == 0 {
		<-ctx.Done()
		code = connect.CodeDeadlineExceeded
	}
	return nil, connect.NewError(code, "failing on purpose")
}

func startCodeServer(t *testing.T, code connect.Code) (*testServer, *codeGreeter) {
	t.Helper()
	g := &codeGreeter{}
	g.code.Store(uint32(code))
	srv := quietServer()
	greeterv1concord.RegisterGreeterService(srv, g)
	return startServer(t, srv, nil), g
}

// breakerClient returns a Greet client without retries whose breaker opens
// when 4 calls in a row count as failures.
func breakerClient(conn *rpc.Conn) greeterv1connect.GreeterServiceClient {
	return greetClient(conn, func(m *rpc.MethodPolicy) {
		m.Retry = nil
		m.CircuitBreaker = &rpc.BreakerPolicy{FailureRatio: 0.5, MinRequests: 4, Window: 10 * time.Second, OpenFor: 5 * time.Second, HalfOpenProbes: 1}
	})
}

func circuitOpen(err error) bool { return err != nil && strings.Contains(err.Error(), "circuit open") }

// TestBreakerCountsOnlyInstanceFailures fails 4 calls in a row in each way a
// call can fail and checks that only failures that say the instance is
// unwell open its breaker, so that a caller that gives up, or one that a
// healthy instance refuses, cannot open it for everyone.
func TestBreakerCountsOnlyInstanceFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   connect.Code // the instance answers with this code
		caller string       // or: "deadline" or "cancel", the caller gives up on a call the instance holds
		down   bool         // or: no instance listens
		counts bool
	}{
		{name: "connection refused", down: true, counts: true},
		{name: "unavailable", code: connect.CodeUnavailable, counts: true},
		{name: "internal", code: connect.CodeInternal, counts: true},
		{name: "unknown", code: connect.CodeUnknown, counts: true},
		{name: "caller deadline", caller: "deadline"},
		{name: "caller cancel", caller: "cancel"},
		{name: "instance deadline_exceeded", code: connect.CodeDeadlineExceeded},
		{name: "resource_exhausted", code: connect.CodeResourceExhausted},
		{name: "invalid_argument", code: connect.CodeInvalidArgument},
		{name: "not_found", code: connect.CodeNotFound},
		{name: "permission_denied", code: connect.CodePermissionDenied},
		{name: "failed_precondition", code: connect.CodeFailedPrecondition},
		{name: "unimplemented", code: connect.CodeUnimplemented},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var started chan string // the instance tells it of each call, for "cancel"
			var url string
			switch {
			case tc.down:
				ln := listen(t)
				url = "http://" + ln.Addr().String()
				ln.Close()
			case tc.caller == "cancel":
				started = make(chan string)
				url = startServer(t, quietServer(), &testGreeter{started: started}).url
			default: // for "deadline", code 0 holds the call
				ts, _ := startCodeServer(t, tc.code)
				url = ts.url
			}
			conn := rpc.NewConn(url)
			defer conn.Close()
			client := breakerClient(conn)
			greet := func() error {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				switch tc.caller {
				case "deadline":
					var cancelTimeout context.CancelFunc
					ctx, cancelTimeout = context.WithTimeout(ctx, 20*time.Millisecond)
					defer cancelTimeout()
				case "cancel":
					go func() {
						select {
						case <-started: // the instance holds the call
							cancel()
						case <-ctx.Done():
						}
					}()
				}
				_, err := client.Greet(ctx, &greeterv1.GreetRequest{Name: "slow:1m"})
				return err
			}
			for i := 0; i < 4; i++ {
				if err := greet(); err == nil || circuitOpen(err) {
					t.Fatalf("call %d: got %v, want a failure from the instance", i, err)
				}
			}
			if err := greet(); circuitOpen(err) != tc.counts {
				t.Fatalf("after 4 failures (%v): circuit open is %v, want %v", err, circuitOpen(err), tc.counts)
			}
		})
	}
}

// TestBreakerProbeOutOfTime checks that a half-open breaker's probe that
// runs out of time, whether the caller or the instance reports it, neither
// closes nor reopens the breaker: it frees its probe slot for the next call.
func TestBreakerProbeOutOfTime(t *testing.T) {
	for _, tc := range []struct {
		name  string
		code  connect.Code // the instance's answer to the probe
		limit time.Duration
	}{
		{"caller deadline", 0, 20 * time.Millisecond},
		{"instance deadline_exceeded", connect.CodeDeadlineExceeded, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts, g := startCodeServer(t, connect.CodeUnavailable)
			var mu sync.Mutex
			now := time.Unix(1000, 0)
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			conn := rpc.NewConn(ts.url, rpc.WithBreakerClock(clock))
			defer conn.Close()
			client := breakerClient(conn)
			greet := func(ctx context.Context) error {
				_, err := client.Greet(ctx, &greeterv1.GreetRequest{Name: "x"})
				return err
			}
			for i := 0; i < 4; i++ {
				if err := greet(t.Context()); connect.CodeOf(err) != connect.CodeUnavailable || circuitOpen(err) {
					t.Fatalf("call %d: %v", i, err)
				}
			}
			if err := greet(t.Context()); !circuitOpen(err) {
				t.Fatalf("after 4 failures: %v, want circuit open", err)
			}
			mu.Lock()
			now = now.Add(5 * time.Second) // half-open
			mu.Unlock()
			g.code.Store(uint32(tc.code))
			ctx, cancel := context.WithTimeout(t.Context(), tc.limit)
			defer cancel()
			if err := greet(ctx); connect.CodeOf(err) != connect.CodeDeadlineExceeded {
				t.Fatalf("probe: %v, want deadline_exceeded", err)
			}
			// Still half-open: the next call is a probe, and its failure
			// reopens the breaker.
			g.code.Store(uint32(connect.CodeUnavailable))
			if err := greet(t.Context()); connect.CodeOf(err) != connect.CodeUnavailable || circuitOpen(err) {
				t.Fatalf("next probe: %v, want it to reach the instance", err)
			}
			if err := greet(t.Context()); !circuitOpen(err) {
				t.Fatalf("after a failed probe: %v, want circuit open", err)
			}
		})
	}
}
