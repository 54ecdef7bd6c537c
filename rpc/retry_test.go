package rpc_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/rpc"
)

// greetClient returns a Greet client whose policy is edited by edit.
func greetClient(conn *rpc.Conn, edit func(*rpc.MethodPolicy)) greeterv1connect.GreeterServiceClient {
	policy := greeterv1concord.GreeterServicePolicy()
	edit(policy.Method(greeterv1connect.GreeterServiceGreetProcedure))
	return greeterv1connect.NewGreeterServiceClient(conn.Client(policy))
}

func fastRetry(attempts int) *rpc.RetryPolicy {
	return &rpc.RetryPolicy{MaxAttempts: attempts, InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond,
		Multiplier: 2, RetryableCodes: []connect.Code{connect.CodeUnavailable}}
}

func TestRetriesStayWithinBudget(t *testing.T) {
	g := &testGreeter{}
	g.failing.Store(true)
	ts := startServer(t, quietServer(), g)
	conn := rpc.NewConn(ts.url) // default budget: 10% plus a reserve of 10
	defer conn.Close()
	client := greetClient(conn, func(m *rpc.MethodPolicy) { m.Retry = fastRetry(3) })
	const calls = 200
	for i := 0; i < calls; i++ {
		if _, err := client.Greet(t.Context(), &greeterv1.GreetRequest{Name: "x"}); connect.CodeOf(err) != connect.CodeUnavailable {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	retries := g.calls.Load() - calls
	maxRetries := int64(rpc.DefaultRetryReserve + rpc.DefaultRetryRatio*calls + 1)
	if retries < rpc.DefaultRetryReserve || retries > maxRetries {
		t.Fatalf("%d retries for %d failing calls; want between %d and %d", retries, calls, rpc.DefaultRetryReserve, maxRetries)
	}
}

func TestRetryRecoversAndRespectsDeadline(t *testing.T) {
	g := &testGreeter{}
	ts := startServer(t, quietServer(), g)
	conn := rpc.NewConn(ts.url)
	defer conn.Close()
	// Transient failures are retried: the third attempt succeeds.
	g.failN.Store(2)
	client := greetClient(conn, func(m *rpc.MethodPolicy) { m.Retry = fastRetry(3) })
	res, err := client.Greet(t.Context(), &greeterv1.GreetRequest{Name: "x"})
	if err != nil || res.GetGreeting() != "Hello, x!" || g.calls.Load() != 3 {
		t.Fatalf("retried call: %v %v after %d attempts, want success after 3", res, err, g.calls.Load())
	}
	// A retry whose (jittered) backoff would end past the deadline is not
	// made: the call ends at once with the last error, before its deadline.
	// This used to allow 50ms over a 100ms deadline, and with full jitter
	// over 1s a retry fitted in the deadline one time in ten. Now the
	// backoff is drawn from (0, 100000h], which lands within the 10s
	// deadline with probability 3e-8, and the checks are a count and an
	// order: exactly one attempt, and the call returned while its context
	// was still live. A client that sleeps through the backoff until the
	// deadline fails the second check, one that retries anyway the first.
	g.failing.Store(true)
	before := g.calls.Load()
	const huge = 100000 * time.Hour
	slow := greetClient(conn, func(m *rpc.MethodPolicy) {
		m.Timeout = 0 // the caller's deadline is the call's: Greet's 2s would end a sleeping retry first
		m.Retry = &rpc.RetryPolicy{MaxAttempts: 5, InitialBackoff: huge, MaxBackoff: huge,
			Multiplier: 1, RetryableCodes: []connect.Code{connect.CodeUnavailable}}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = slow.Greet(ctx, &greeterv1.GreetRequest{Name: "x"})
	ctxErr := ctx.Err()
	if attempts := g.calls.Load() - before; connect.CodeOf(err) != connect.CodeUnavailable || attempts != 1 || ctxErr != nil {
		t.Fatalf("got %v after %d attempts, context %v; want unavailable after 1 attempt, before the deadline", err, attempts, ctxErr)
	}
}

func TestCircuitBreaker(t *testing.T) {
	g := &testGreeter{}
	g.failing.Store(true)
	ts := startServer(t, quietServer(), g)
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	var fellBack []string
	conn := rpc.NewConn(ts.url, rpc.WithBreakerClock(clock),
		rpc.WithFallback(func(_ context.Context, spec connect.Spec, req, res any, err error) error {
			if !strings.Contains(err.Error(), "circuit open") {
				return err // only degrade when the breaker refuses
			}
			fellBack = append(fellBack, spec.Procedure)
			res.(*greeterv1.GreetResponse).Greeting = "cached hello"
			return nil
		}))
	defer conn.Close()
	client := greetClient(conn, func(m *rpc.MethodPolicy) {
		m.Retry = nil
		m.CircuitBreaker = &rpc.BreakerPolicy{FailureRatio: 0.5, MinRequests: 4, Window: 10 * time.Second, OpenFor: 5 * time.Second, HalfOpenProbes: 1}
	})
	greet := func() (*greeterv1.GreetResponse, error) {
		return client.Greet(t.Context(), &greeterv1.GreetRequest{Name: "x"})
	}
	for i := 0; i < 4; i++ {
		if _, err := greet(); connect.CodeOf(err) != connect.CodeUnavailable {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// Open: calls no longer reach the server, and the fallback answers.
	reached := g.calls.Load()
	res, err := greet()
	if err != nil || res.GetGreeting() != "cached hello" || g.calls.Load() != reached {
		t.Fatalf("open breaker: %v %v, server calls %d -> %d", res, err, reached, g.calls.Load())
	}
	// Half-open after OpenFor: one probe reaches the healthy server and closes
	// the breaker.
	g.failing.Store(false)
	advance(5 * time.Second)
	if res, err := greet(); err != nil || res.GetGreeting() != "Hello, x!" {
		t.Fatalf("probe: %v %v", res, err)
	}
	for i := 0; i < 3; i++ {
		if _, err := greet(); err != nil {
			t.Fatalf("closed breaker: %v", err)
		}
	}
	if g.calls.Load() != reached+4 || len(fellBack) != 1 {
		t.Fatalf("server calls %d (want %d), fallbacks %d (want 1)", g.calls.Load(), reached+4, len(fellBack))
	}
}
