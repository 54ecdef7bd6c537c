package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// ErrUnsupported is returned (wrapped, with the variable and its value)
// by FromEnv and Propagator when the environment names an exporter,
// protocol or propagator that this package does not build.
var ErrUnsupported = errors.New("tracing: unsupported setting")

// Configured reports whether the environment asks for a trace exporter
// (see the package doc), that is whether FromEnv returns a provider.
func Configured() bool {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	if v, ok := os.LookupEnv("OTEL_TRACES_EXPORTER"); ok && strings.TrimSpace(v) != "" {
		for _, name := range strings.Split(v, ",") {
			if n := strings.TrimSpace(name); n != "" && n != "none" {
				return true
			}
		}
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// FromEnv returns a tracer provider that exports spans with OTLP as the
// OTEL_* environment variables say (see the package doc), or nil and no
// error when they configure no exporter. It does no I/O: the exporter
// connects when it first exports. Shut the provider down when done.
//
// FromEnv returns ErrUnsupported for an exporter other than otlp or
// none, or an OTLP protocol other than http/protobuf or grpc, and the
// exporter's or the SDK's error for a malformed setting.
func FromEnv(ctx context.Context) (*sdktrace.TracerProvider, error) {
	if !Configured() {
		return nil, nil
	}
	if v := os.Getenv("OTEL_TRACES_EXPORTER"); v != "" {
		for _, name := range strings.Split(v, ",") {
			if n := strings.TrimSpace(name); n != "otlp" && n != "none" && n != "" {
				return nil, fmt.Errorf("%w: OTEL_TRACES_EXPORTER=%q (only otlp and none)", ErrUnsupported, v)
			}
		}
	}
	protocol := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exp sdktrace.SpanExporter
	var err error
	switch strings.TrimSpace(protocol) {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("%w: OTLP protocol %q (only http/protobuf and grpc)", ErrUnsupported, protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	// resource.Default reads the environment once per process; read it
	// again so that the attributes are the ones in force now.
	res, err := resource.New(ctx, resource.WithFromEnv())
	if err != nil {
		res = resource.Empty() // a malformed OTEL_RESOURCE_ATTRIBUTES: keep what Default has
	}
	if res, err = resource.Merge(resource.Default(), res); err != nil {
		res = resource.Default()
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// Propagator returns the propagator that OTEL_PROPAGATORS names:
// a comma-separated list of "tracecontext", "baggage" and "none". Unset,
// it is W3C Trace Context alone (the specification's default adds
// baggage: list it to carry baggage, which callers choose). It returns
// ErrUnsupported, with W3C Trace Context, for any other name.
func Propagator() (propagation.TextMapPropagator, error) {
	v := strings.TrimSpace(os.Getenv("OTEL_PROPAGATORS"))
	if v == "" {
		return propagation.TraceContext{}, nil
	}
	var props []propagation.TextMapPropagator
	for _, name := range strings.Split(v, ",") {
		switch strings.TrimSpace(name) {
		case "tracecontext":
			props = append(props, propagation.TraceContext{})
		case "baggage":
			props = append(props, propagation.Baggage{})
		case "none", "":
		default:
			return propagation.TraceContext{}, fmt.Errorf("%w: OTEL_PROPAGATORS=%q (only tracecontext, baggage and none)", ErrUnsupported, v)
		}
	}
	return propagation.NewCompositeTextMapPropagator(props...), nil
}
