package rpc_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/rpc/internal/healthv1"
)

// TestReadinessGates checks the not-ready path with two gates, as a load
// balancer (/readyz) and a gRPC health probe (over the gRPC protocol) see
// it: the server is ready only when every gate is, a gate that reports
// ready again can report not ready with a new reason, and each not-ready
// answer gives every pending gate's reason. TestHealth covers one gate and
// the Watch stream.
func TestReadinessGates(t *testing.T) {
	srv := quietServer(rpc.WithReadinessGates("coordination", "cache"))
	greeterv1concord.RegisterGreeterService(srv, &testGreeter{})
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("server did not stop within 30s")
		}
	})
	url := "http://" + ln.Addr().String()
	waitStatus(t, url+"/healthz", http.StatusOK) // serving: from here, only the gates matter

	health := connect.NewClient(connectTransport(url, connecthttp.WithGRPC()))
	check := func(service string) healthv1.HealthCheckResponse_ServingStatus {
		t.Helper()
		var res healthv1.HealthCheckResponse
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		err := health.CallUnary(ctx, connect.Spec{Procedure: "/grpc.health.v1.Health/Check", StreamType: connect.StreamTypeUnary},
			&healthv1.HealthCheckRequest{Service: service}, &res)
		if err != nil {
			t.Fatalf("gRPC health check of %q: %v", service, err)
		}
		return res.GetStatus()
	}
	readyz := func() (int, string) {
		t.Helper()
		res, err := http.Get(url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	// Readiness changes synchronously: no polling after each step.
	expect := func(step, why string) {
		t.Helper()
		wantCode, wantBody, wantStatus := http.StatusServiceUnavailable, "not ready: "+why+"\n", healthv1.HealthCheckResponse_NOT_SERVING
		if why == "" {
			wantCode, wantBody, wantStatus = http.StatusOK, "ready\n", healthv1.HealthCheckResponse_SERVING
		}
		if code, body := readyz(); code != wantCode || body != wantBody {
			t.Errorf("%s: /readyz %d %q, want %d %q", step, code, body, wantCode, wantBody)
		}
		if ready, reason := srv.Ready(); ready != (why == "") || reason != why {
			t.Errorf("%s: Ready() = %v %q, want %v %q", step, ready, reason, why == "", why)
		}
		for _, svc := range []string{"", "greeter.v1.GreeterService"} {
			if st := check(svc); st != wantStatus {
				t.Errorf("%s: gRPC health of %q is %v, want %v", step, svc, st, wantStatus)
			}
		}
	}
	expect("at start", "cache: starting; coordination: starting")
	srv.SetReady("coordination")
	expect("one gate ready", "cache: starting")
	srv.SetNotReady("coordination", "lost quorum")
	expect("a gate lost", "cache: starting; coordination: lost quorum")
	srv.SetReady("cache")
	expect("the other gate ready", "coordination: lost quorum")
	srv.SetReady("coordination")
	expect("both ready", "")
	srv.SetReady("no-such-gate")
	expect("an unknown gate reported ready", "")
}

// TestServeHandler: a host that serves the handler itself (a function
// runtime) gets a server that says it is serving, without Serve; a failed
// registration is reported instead of a handler, and Serve afterwards is
// refused.
func TestServeHandler(t *testing.T) {
	srv := quietServer()
	greeterv1concord.RegisterGreeterService(srv, &testGreeter{})
	if ready, why := srv.Ready(); ready {
		t.Fatalf("ready before ServeHandler: %q", why)
	}
	h, err := srv.ServeHandler()
	if err != nil {
		t.Fatal(err)
	}
	if ready, why := srv.Ready(); !ready {
		t.Fatalf("not ready after ServeHandler: %q", why)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/readyz through the handler: %d %s", rec.Code, rec.Body)
	}
	if _, err := srv.ServeHandler(); err == nil {
		t.Fatal("a second ServeHandler succeeded")
	}
	if err := srv.Serve(t.Context(), listen(t)); err == nil {
		t.Fatal("Serve after ServeHandler succeeded")
	}

	twice := quietServer()
	greeterv1concord.RegisterGreeterService(twice, &testGreeter{})
	greeterv1concord.RegisterGreeterService(twice, &testGreeter{})
	if h, err := twice.ServeHandler(); err == nil || h != nil || !strings.Contains(err.Error(), "registered twice") {
		t.Fatalf("ServeHandler after a double registration: %v, %v", h, err)
	}
}
