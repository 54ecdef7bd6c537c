package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/rpc"
)

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() int64              { return c.ns.Load() }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// shout posts a Connect JSON Shout and returns the status, the
// Retry-After header and the body. It calls t.Fatal: use tryShout off the
// test's goroutine.
func shout(t *testing.T, url string, header map[string]string) (int, string, string) {
	t.Helper()
	code, retryAfter, body, err := tryShout(url, header)
	if err != nil {
		t.Fatal(err)
	}
	return code, retryAfter, body
}

// tryShout is shout without t, for any goroutine, bounded by 30s.
func tryShout(url string, header map[string]string) (int, string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/greeter.v1.GreeterService/Shout", strings.NewReader(`{"name":"ada"}`))
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, res.Header.Get("Retry-After"), string(body), err
}

// TestRateLimitFromProto checks the limit declared on Shout (token bucket,
// 3 per second) with exact counts on a fake clock, over HTTP as curl sees it.
func TestRateLimitFromProto(t *testing.T) {
	clock := &fakeClock{}
	ts := startServer(t, quietServer(rpc.WithAdmissionOptions(rpc.WithLimiterClock(clock))), &testGreeter{})
	for i := 0; i < 3; i++ {
		if code, _, body := shout(t, ts.url, nil); code != 200 {
			t.Fatalf("call %d: %d %s", i, code, body)
		}
	}
	code, retryAfter, body := shout(t, ts.url, nil)
	if code != http.StatusTooManyRequests || retryAfter != "1" {
		t.Fatalf("4th call: %d Retry-After %q %s", code, retryAfter, body)
	}
	var ce connectError
	_ = json.Unmarshal([]byte(body), &ce)
	if ce.Code != "resource_exhausted" || !strings.Contains(ce.Message, "retry after 333ms") {
		t.Fatalf("4th call body %s", body)
	}
	// The structured retry delay reaches a connect client.
	conn := rpc.NewConn(ts.url)
	defer conn.Close()
	_, err := greeterv1concord.NewGreeterServiceClient(conn).Shout(t.Context(), &greeterv1.ShoutRequest{Name: "x"})
	if delay := retryDelay(t, err); delay != 333333333*time.Nanosecond {
		t.Fatalf("RetryInfo delay %v", delay)
	}
	clock.Advance(333333333 * time.Nanosecond)
	if code, _, _ := shout(t, ts.url, nil); code != 200 {
		t.Fatalf("after the retry delay: %d", code)
	}
	if code, _, _ := shout(t, ts.url, nil); code != 429 {
		t.Fatalf("second call after one refill: %d", code)
	}
	// Other methods have no limit.
	for i := 0; i < 10; i++ {
		if _, err := greeterv1concord.NewGreeterServiceClient(conn).Greet(t.Context(), &greeterv1.GreetRequest{Name: "x"}); err != nil {
			t.Fatal(err)
		}
	}
}

func retryDelay(t *testing.T, err error) time.Duration {
	t.Helper()
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeResourceExhausted {
		t.Fatalf("got %v, want resource_exhausted", err)
	}
	for _, d := range cerr.Details() {
		if d.Type == "google.rpc.RetryInfo" {
			var ri errdetails.RetryInfo
			if err := proto.Unmarshal(d.Value, &ri); err != nil {
				t.Fatal(err)
			}
			return ri.GetRetryDelay().AsDuration()
		}
	}
	t.Fatalf("no RetryInfo detail in %v", cerr.Details())
	return 0
}

// registerWithLimit registers the test greeter with Shout limited by rl.
func registerWithLimit(srv *rpc.Server, rl *rpc.RateLimitPolicy) {
	policy := greeterv1concord.GreeterServicePolicy()
	policy.Method(greeterv1connect.GreeterServiceShoutProcedure).RateLimit = rl
	srv.RegisterService(policy, func(s *connect.Server) {
		greeterv1connect.RegisterGreeterServiceHandler(s, &testGreeter{})
	})
}

func TestRateLimitPerHeader(t *testing.T) {
	clock := &fakeClock{}
	srv := quietServer(rpc.WithAdmissionOptions(rpc.WithLimiterClock(clock)))
	registerWithLimit(srv, &rpc.RateLimitPolicy{Algorithm: rpc.TokenBucket, Rate: 2, Per: time.Second, Burst: 2, Key: rpc.KeyHeader, Header: "x-tenant"})
	ts := startServer(t, srv, nil)
	count := func(tenant string) int {
		ok := 0
		for i := 0; i < 5; i++ {
			if code, _, _ := shout(t, ts.url, map[string]string{"X-Tenant": tenant}); code == 200 {
				ok++
			}
		}
		return ok
	}
	if a, b, none := count("a"), count("b"), count(""); a != 2 || b != 2 || none != 2 {
		t.Fatalf("per-tenant admissions a=%d b=%d none=%d, want 2 each", a, b, none)
	}
}

// TestLeakyBucketPacesCalls sends four calls at once to a leaky bucket of
// 20 per second with a queue of 2. The limiter's clock is fake and stands
// still, so its decisions do not depend on when the calls arrive (with the
// real clock a call delayed 50ms by a loaded machine finds a slot freed and
// all four pass): one passes at once, two queue for the slots 50ms and
// 100ms later, and the fourth finds the queue full. The waits themselves
// are real timers, so the queued calls end no earlier than 100ms after the
// first was admitted.
func TestLeakyBucketPacesCalls(t *testing.T) {
	clock := &fakeClock{}
	srv := quietServer(rpc.WithAdmissionOptions(rpc.WithLimiterClock(clock)))
	registerWithLimit(srv, &rpc.RateLimitPolicy{Algorithm: rpc.LeakyBucket, Rate: 20, Per: time.Second, Burst: 2})
	ts := startServer(t, srv, nil)
	type result struct {
		code       int
		retryAfter string
		err        error
	}
	start := time.Now()
	results := make(chan result, 4)
	for i := 0; i < 4; i++ {
		go func() {
			code, retryAfter, _, err := tryShout(ts.url, nil)
			results <- result{code, retryAfter, err}
		}()
	}
	var ok, limited int
	for i := 0; i < 4; i++ {
		r := <-results // each send happens within tryShout's 30s bound
		switch {
		case r.err != nil:
			t.Errorf("call: %v", r.err)
		case r.code == 200:
			ok++
		case r.code == 429 && r.retryAfter == "1":
			limited++
		default:
			t.Errorf("call: HTTP %d, Retry-After %q", r.code, r.retryAfter)
		}
	}
	if ok != 3 || limited != 1 {
		t.Fatalf("ok %d limited %d, want 3 and 1", ok, limited)
	}
	// A lower bound only: load can only make the calls slower.
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Fatalf("3 paced calls finished in %v, want >= 100ms", el)
	}
}

func TestLoadShedding(t *testing.T) {
	started := make(chan string, 8)
	ts := startServer(t, quietServer(rpc.WithAdmissionOptions(rpc.WithMaxInFlight(2))), &testGreeter{started: started})
	conn := rpc.NewConn(ts.url)
	defer conn.Close()
	// No retries: the shed call must surface, not be retried once the load
	// has passed.
	client := greetClient(conn, func(m *rpc.MethodPolicy) { m.Retry = nil })
	done := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() {
			_, err := client.Greet(context.Background(), &greeterv1.GreetRequest{Name: "slow:300ms"})
			done <- err
		}()
	}
	<-started
	<-started
	_, err := client.Greet(t.Context(), &greeterv1.GreetRequest{Name: "x"})
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "overloaded") {
		t.Fatalf("third call: %v, want unavailable", err)
	}
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil {
			t.Fatalf("in-flight call: %v", err)
		}
	}
	if _, err := client.Greet(t.Context(), &greeterv1.GreetRequest{Name: "x"}); err != nil {
		t.Fatalf("after the load passed: %v", err)
	}
	if n := ts.srv.ShedCalls(); n != 1 {
		t.Fatalf("ShedCalls %d, want 1", n)
	}
}
