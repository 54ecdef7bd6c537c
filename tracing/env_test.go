package tracing_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/concordrpc/concord/tracing"
)

// clearEnv unsets every variable the package reads, for the test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_PROPAGATORS", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
}

func TestConfigured(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing", nil, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{"exporter otlp", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{"exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, false},
		{"sdk disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if got := tracing.Configured(); got != tc.want {
				t.Fatalf("Configured() = %v, want %v", got, tc.want)
			}
			tp, err := tracing.FromEnv(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if (tp != nil) != tc.want {
				t.Fatalf("FromEnv returned provider %v, want one: %v", tp != nil, tc.want)
			}
			if tp != nil {
				_ = tp.Shutdown(context.Background())
			}
		})
	}
}

func TestFromEnvUnsupported(t *testing.T) {
	for _, env := range []map[string]string{
		{"OTEL_TRACES_EXPORTER": "zipkin"},
		{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
	} {
		clearEnv(t)
		for k, v := range env {
			t.Setenv(k, v)
		}
		if tp, err := tracing.FromEnv(context.Background()); !errors.Is(err, tracing.ErrUnsupported) || tp != nil {
			t.Errorf("%v: FromEnv = %v, %v; want ErrUnsupported", env, tp, err)
		}
	}
}

// collected is what a test collector received.
type collected struct {
	mu   sync.Mutex
	reqs []*coltracepb.ExportTraceServiceRequest
}

func (c *collected) add(r *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	c.reqs = append(c.reqs, r)
	c.mu.Unlock()
}

// spans returns the names of the spans received, and the service.name
// of their resources.
func (c *collected) spans() (names, services []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.reqs {
		for _, rs := range r.GetResourceSpans() {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					services = append(services, a.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					names = append(names, s.GetName())
				}
			}
		}
	}
	return names, services
}

// exportOne makes a provider from the environment, records one span named
// name, and shuts the provider down (which flushes it).
func exportOne(t *testing.T, name string) {
	t.Helper()
	tp, err := tracing.FromEnv(context.Background())
	if err != nil || tp == nil {
		t.Fatalf("FromEnv = %v, %v", tp, err)
	}
	_, span := tp.Tracer("test").Start(context.Background(), name)
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestFromEnvExportsOverHTTP: with only OTEL_EXPORTER_OTLP_ENDPOINT (and a
// service name) set, spans reach a collector at that endpoint as OTLP
// protobuf over HTTP, with the resource the environment names, by the
// time Shutdown returns.
func TestFromEnvExportsOverHTTP(t *testing.T) {
	var got collected
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		req := &coltracepb.ExportTraceServiceRequest{}
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		got.add(req)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	clearEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_SERVICE_NAME", "orders")
	exportOne(t, "over-http")
	names, services := got.spans()
	if len(names) != 1 || names[0] != "over-http" || len(services) != 1 || services[0] != "orders" {
		t.Fatalf("collector got spans %v of services %v, want [over-http] of [orders]", names, services)
	}
}

// traceService is an OTLP gRPC collector.
type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	got *collected
}

func (s traceService) Export(_ context.Context, r *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.got.add(r)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// TestFromEnvExportsOverGRPC: OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports to
// an OTLP gRPC collector.
func TestFromEnvExportsOverGRPC(t *testing.T) {
	var got collected
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, traceService{got: &got})
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	clearEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	exportOne(t, "over-grpc")
	if names, _ := got.spans(); len(names) != 1 || names[0] != "over-grpc" {
		t.Fatalf("collector got spans %v, want [over-grpc]", names)
	}
}

// TestFromEnvSampler: the SDK's sampler variables apply, so an exporter
// can be configured with sampling off.
func TestFromEnvSampler(t *testing.T) {
	clearEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1") // never reached: nothing is sampled
	t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	tp, err := tracing.FromEnv(context.Background())
	if err != nil || tp == nil {
		t.Fatalf("FromEnv = %v, %v", tp, err)
	}
	defer func() { _ = tp.Shutdown(context.Background()) }()
	_, span := tp.Tracer("test").Start(context.Background(), "unsampled")
	defer span.End()
	if span.IsRecording() || span.SpanContext().IsSampled() {
		t.Fatal("span recorded with OTEL_TRACES_SAMPLER=always_off")
	}
	if !span.SpanContext().IsValid() {
		t.Fatal("an unsampled span still needs a valid context to propagate")
	}
}

func TestPropagator(t *testing.T) {
	for _, tc := range []struct {
		env    string
		fields []string
		err    bool
	}{
		{"", []string{"traceparent", "tracestate"}, false},
		{"tracecontext", []string{"traceparent", "tracestate"}, false},
		{"tracecontext,baggage", []string{"traceparent", "tracestate", "baggage"}, false},
		{"none", nil, false},
		{"b3", []string{"traceparent", "tracestate"}, true},
	} {
		clearEnv(t)
		t.Setenv("OTEL_PROPAGATORS", tc.env)
		p, err := tracing.Propagator()
		if (err != nil) != tc.err || !errors.Is(err, tracing.ErrUnsupported) && tc.err {
			t.Errorf("OTEL_PROPAGATORS=%q: error %v", tc.env, err)
		}
		fields := map[string]bool{}
		for _, f := range p.Fields() {
			fields[f] = true
		}
		if len(fields) != len(tc.fields) {
			t.Errorf("OTEL_PROPAGATORS=%q: fields %v, want %v", tc.env, p.Fields(), tc.fields)
		}
		for _, f := range tc.fields {
			if !fields[f] {
				t.Errorf("OTEL_PROPAGATORS=%q: fields %v, want %v", tc.env, p.Fields(), tc.fields)
			}
		}
	}
}
