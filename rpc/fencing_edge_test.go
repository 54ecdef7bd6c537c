package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/rpc"
)

// postCode sends a Connect JSON Greet by hand with the given fencing header
// values and returns the Connect code of the answer ("" on success).
// Connect maps both invalid_argument and failed_precondition to HTTP 400,
// so the status alone cannot tell a header the parser refused from one the
// guard refused.
func postCode(t *testing.T, url string, fencing ...string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url+greeterv1connect.GreeterServiceGreetProcedure, strings.NewReader(`{"name":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	for _, v := range fencing {
		req.Header.Add(rpc.FencingHeader, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK {
		return ""
	}
	body, _ := io.ReadAll(res.Body)
	var ce connectError
	if err := json.Unmarshal(body, &ce); err != nil {
		t.Fatalf("HTTP %d with body %q", res.StatusCode, body)
	}
	return ce.Code
}

// TestFencingHeaderBounds checks the header's limits at and around their
// edges, by the code: invalid_argument means the interceptor refused the
// header; failed_precondition means it parsed the header and the guard
// refused the (never granted) tokens. A parser that counted or measured
// wrongly (tokens per header value rather than per call, a resource's
// length before unescaping rather than after) fails one side or the other.
func TestFencingHeaderBounds(t *testing.T) {
	fs := startFencedServer(t)
	tokens := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("r%d=1", i)
		}
		return out
	}
	const (
		refused = "invalid_argument"
		guarded = "failed_precondition"
	)
	for _, tc := range []struct {
		name   string
		values []string
		want   string
	}{
		{"16 tokens in one value", []string{strings.Join(tokens(16), ",")}, guarded},
		{"16 tokens in 16 values", tokens(16), guarded},
		{"17 tokens in 17 values", tokens(17), refused},
		{"17 tokens over two values", []string{strings.Join(tokens(9), ","), strings.Join(tokens(17)[9:], ",")}, refused},
		{"the same token twice counts once", []string{"a=1", "a=1"}, guarded},
		{"escape cut short", []string{"%=1"}, refused},
		{"escape of one digit", []string{"%4=1"}, refused},
		{"escape cut short mid-name", []string{"a%2=1"}, refused},
		{"escape with a non-hex digit", []string{"%G1=1"}, refused},
		{"empty name", []string{"=1"}, refused},
		{"escaped reserved bytes", []string{"a%3Db%2Cc%25=1"}, guarded},
		{"512-byte name", []string{strings.Repeat("r", 512) + "=1"}, guarded},
		{"513-byte name", []string{strings.Repeat("r", 513) + "=1"}, refused},
		{"513 bytes once unescaped", []string{strings.Repeat("%41", 513) + "=1"}, refused},
		{"600 characters escaped, 200 bytes unescaped", []string{strings.Repeat("%2C", 200) + "=1"}, guarded},
	} {
		if got := postCode(t, fs.url, tc.values...); got != tc.want {
			t.Errorf("%s: %q, want %s", tc.name, got, tc.want)
		}
	}
	if log := fs.g.logged(); len(log) != 0 {
		t.Fatalf("a handler ran: %v", log)
	}
}

// TestFencingGuardFails stops the coordination node, so that the guard
// cannot verify a new token: the call fails with unavailable before the
// handler runs, nothing is recorded, and the resource's lock in the
// interceptor is released (a second call gets the same answer, not a wait
// until its deadline).
func TestFencingGuardFails(t *testing.T) {
	fs := startFencedServer(t)
	_, tok := fs.grant(t, "orders/1")
	if err := fs.node.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		ctx, cancel := context.WithTimeout(rpc.WithFencingToken(t.Context(), "orders/1", tok), 10*time.Second)
		_, err := fs.client.Greet(ctx, &greeterv1.GreetRequest{Name: "orders/1"})
		cancel()
		if codeOf(t, err) != connect.CodeUnavailable {
			t.Fatalf("call %d with the guard unable to verify: %v, want unavailable", i, err)
		}
	}
	if log := fs.g.logged(); len(log) != 0 {
		t.Fatalf("the handler ran without an admitted token: %v", log)
	}
	if h, err := fs.guard.Highest("orders/1"); err != nil || h != 0 {
		t.Fatalf("highest token recorded %d (%v), want none", h, err)
	}
}

// TestFencingQueuedCallGivesUp holds a fenced call on a resource, queues a
// second one on it until its deadline passes, then queues a third. The
// second fails with deadline_exceeded without running; the third runs only
// after the first ended: the second giving up must not free a lock that the
// first still holds.
func TestFencingQueuedCallGivesUp(t *testing.T) {
	fs := startFencedServer(t)
	release := sync.OnceFunc(func() { close(fs.g.hold) })
	t.Cleanup(release)
	_, tok := fs.grant(t, "r")
	ctx := rpc.WithFencingToken(t.Context(), "r", tok)
	greet := func(ctx context.Context, name string, d time.Duration) <-chan error {
		errc := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			_, err := fs.client.Greet(ctx, &greeterv1.GreetRequest{Name: name})
			errc <- err
		}()
		return errc
	}
	// logShows waits up to d for the log to have n entries.
	logShows := func(n int, d time.Duration) []string {
		deadline := time.Now().Add(d)
		for i := 0; i < 100000; i++ {
			if log := fs.g.logged(); len(log) >= n || time.Now().After(deadline) {
				return log
			}
			time.Sleep(time.Millisecond)
		}
		return fs.g.logged()
	}
	first := greet(ctx, "r|hold", 30*time.Second)
	if log := logShows(1, 10*time.Second); len(log) != 1 {
		t.Fatalf("the first call did not start within 10s: %v", log)
	}
	// The second call's deadline passes while it waits for the first.
	if err := <-greet(ctx, "r", 500*time.Millisecond); connect.CodeOf(err) != connect.CodeDeadlineExceeded {
		t.Fatalf("queued call past its deadline: %v, want deadline_exceeded", err)
	}
	third := greet(ctx, "r", 30*time.Second)
	// Give the third call time to reach the interceptor: had the second
	// freed the first's lock, it would run now, beside the first. (A
	// shorter wait only makes that bug less likely to show; it cannot make
	// this test fail.)
	if log := logShows(2, 300*time.Millisecond); len(log) != 1 {
		t.Fatalf("a call ran while the first still held the resource: %v", log)
	}
	release()
	for _, errc := range []<-chan error{first, third} {
		if err := <-errc; err != nil { // each ends within its 30s deadline
			t.Fatal(err)
		}
	}
	want := fmt.Sprintf("start:%d end:%d start:%d end:%d", tok, tok, tok, tok)
	if got := strings.Join(fs.g.logged(), " "); got != want {
		t.Fatalf("log %s, want %s (the second call never ran, the third after the first)", got, want)
	}
}

// TestFencingStream fences the server-streaming GreetMany: a stream is
// checked like a unary call before its handler runs, and the handler sees
// the admitted tokens.
func TestFencingStream(t *testing.T) {
	fs := startFencedServer(t, greeterv1connect.GreeterServiceGreetManyProcedure)
	greetMany := func(ctx context.Context, names ...string) ([]string, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		stream, err := fs.client.GreetMany(ctx, &greeterv1.GreetManyRequest{Names: names})
		if err != nil {
			return nil, err
		}
		defer stream.Close()
		var got []string
		for range 10 {
			res, err := stream.Receive()
			if errors.Is(err, io.EOF) {
				return got, nil
			}
			if err != nil {
				return got, err
			}
			got = append(got, res.GetGreeting())
		}
		return got, errors.New("more than 10 messages")
	}
	ctx := t.Context()
	if got, err := greetMany(ctx, "a"); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("stream without a required token: %v %v, want failed_precondition", got, err)
	}
	ma, ta := fs.grant(t, "a")
	_, tb := fs.grant(t, "b")
	got, err := greetMany(rpc.WithFencingToken(rpc.WithFencingToken(ctx, "a", ta), "b", tb), "a", "b")
	if want := []string{fmt.Sprintf("%d true", ta), fmt.Sprintf("%d true", tb)}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("stream with current tokens: %v %v, want %v", got, err, want)
	}
	if err := ma.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	_, ta2 := fs.grant(t, "a")
	if _, err := greetMany(rpc.WithFencingToken(ctx, "a", ta2), "a"); err != nil {
		t.Fatalf("stream with the next holder's token: %v", err)
	}
	if got, err := greetMany(rpc.WithFencingToken(ctx, "a", ta), "a"); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("stream with the previous holder's token: %v %v, want failed_precondition", got, err)
	}
	if log := fs.g.logged(); len(log) != 2 {
		t.Fatalf("stream handler ran %d times, want 2 (refused streams must not run): %v", len(log), log)
	}
}
