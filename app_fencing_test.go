package concord_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/rpc"
)

// TestAppFencingRefusesForgedTokens serves a fenced Greet from an App (its
// guard comes with it) and sends what an anonymous caller could: a token
// of 2^64-1 and one just above the real holder's, for the lock the real
// holder has. Both are refused and recorded nowhere; the real holder's
// call is admitted after them (issue 11: one such call used to refuse
// every real holder for good).
func TestAppFencingRefusesForgedTokens(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	policy := greeterv1concord.GreeterServicePolicy()
	policy.Method(greeterv1connect.GreeterServiceGreetProcedure).Fencing = &rpc.FencingPolicy{Required: true}
	app, url := servePolicy(ctx, t, policy)
	m := app.Mutex("orders/42")
	token, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Unlock(context.Background()) }()

	greet := func(fencing string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost,
			url+greeterv1connect.GreeterServiceGreetProcedure, strings.NewReader(`{"name":"Ada"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(rpc.FencingHeader, fencing)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for _, forged := range []uint64{^uint64(0), token + 1} {
		if code := greet(fmt.Sprintf("orders/42=%d", forged)); code != http.StatusBadRequest {
			t.Errorf("forged token %d: HTTP %d, want 400 (failed_precondition)", forged, code)
		}
	}
	guard, err := app.Guard(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := guard.Highest("orders/42"); err != nil || h != 0 {
		t.Fatalf("forged tokens were recorded: %d, %v", h, err)
	}
	if code := greet(fmt.Sprintf("orders/42=%d", token)); code != http.StatusOK {
		t.Fatalf("the real holder's token %d after forged ones: HTTP %d, want 200", token, code)
	}
}

// servePolicy runs an App that serves the greeter under policy (changed by
// the caller from the generated one) and returns it and its base URL, once
// its coordination is ready. It stops at cleanup.
func servePolicy(ctx context.Context, t *testing.T, policy *rpc.ServicePolicy) (*concord.App, string) {
	t.Helper()
	return serveLogged(ctx, t, policy, slog.New(slog.DiscardHandler))
}
