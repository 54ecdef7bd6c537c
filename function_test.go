package concord_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/rpc"
)

// greetJSON calls Greet on h as curl would and returns the status and body.
func greetJSON(h http.Handler, name string) (int, string) {
	req := httptest.NewRequest(http.MethodPost, "/greeter.v1.GreeterService/Greet", strings.NewReader(`{"name":"`+name+`"}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

// TestRunFunction checks function mode without coordination options: the
// handler serves calls that need no coordination, what needs it fails at
// once naming client mode, there is no local store and no listener, the
// data directory stays empty, and Run cannot follow.
func TestRunFunction(t *testing.T) {
	dir := t.TempDir()
	app := concord.New(concord.WithDataDir(dir), concord.WithLogger(slog.New(slog.DiscardHandler)))
	greeterv1concord.RegisterGreeterService(app, greeter.Service{})
	served := false
	err := app.RunFunction(t.Context(), func(h http.Handler) error {
		served = true
		if code, body := greetJSON(h, "Ada"); code != http.StatusOK || body != `{"greeting":"Hello, Ada!"}` {
			return fmt.Errorf("Greet: %d %s", code, body)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if _, err := app.Node(ctx); !errors.Is(err, concord.ErrNotReady) || !strings.Contains(err.Error(), "client mode") {
			return fmt.Errorf("Node without client-mode options: %v, want ErrNotReady naming client mode", err)
		}
		if _, err := app.Local(ctx); !errors.Is(err, concord.ErrNotReady) || !strings.Contains(err.Error(), "function mode") {
			return fmt.Errorf("Local in function mode: %v, want ErrNotReady naming function mode", err)
		}
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if addr, err := app.AdminAddr(short); err == nil {
			return fmt.Errorf("function mode opened an admin listener on %v", addr)
		}
		return nil
	})
	if err != nil || !served {
		t.Fatalf("RunFunction: %v (served: %v)", err, served)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("function mode wrote to the data directory: %v (%v)", entries, err)
	}
	if err := app.Run(t.Context()); err == nil {
		t.Error("Run after RunFunction succeeded")
	}
}

// TestRunFunctionRefusesLocalBarrier: a TCC barrier in the local store
// cannot work without one.
func TestRunFunctionRefusesLocalBarrier(t *testing.T) {
	app := concord.New(concord.WithDataDir(t.TempDir()), concord.WithLogger(slog.New(slog.DiscardHandler)),
		concord.WithTCCLocalBarrier([]*rpc.ServicePolicy{greeterv1concord.GreeterServicePolicy()}))
	err := app.RunFunction(t.Context(), func(http.Handler) error { t.Error("served"); return nil })
	if err == nil || !strings.Contains(err.Error(), "SQL barrier") {
		t.Fatalf("RunFunction with a local barrier: %v", err)
	}
}

// TestRunFunctionFlushesSpans: in function mode each call's spans are
// exported before the call returns, although the provider's batcher would
// wait a minute: a frozen process exports nothing.
func TestRunFunctionFlushesSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Minute)))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	app := concord.New(concord.WithDataDir(t.TempDir()), concord.WithLogger(slog.New(slog.DiscardHandler)),
		concord.WithTracerProvider(tp))
	greeterv1concord.RegisterGreeterService(app, greeter.Service{})
	err := app.RunFunction(t.Context(), func(h http.Handler) error {
		if code, body := greetJSON(h, "Ada"); code != http.StatusOK {
			return fmt.Errorf("Greet: %d %s", code, body)
		}
		if spans := exp.GetSpans(); len(spans) != 1 || spans[0].Name != "greeter.v1.GreeterService/Greet" {
			return fmt.Errorf("spans exported when the call returned: %v, want the server span of Greet", spans.Snapshots())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
