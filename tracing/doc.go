// Package tracing builds OpenTelemetry tracing from the standard OTEL_*
// environment variables, the way a concord.App does when it is given no
// tracer provider (concord.WithTracerProvider). It is a package of its own
// so that processes that are not Apps (a plain rpc.Server, a message
// relay, a tool) configure tracing the same way, and so that the App's
// files hold one line of it.
//
// # What turns tracing on
//
// FromEnv returns a tracer provider only when the environment asks for
// an exporter: OTEL_TRACES_EXPORTER lists "otlp", or it is unset and
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
// set. OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none turn it off;
// any other exporter name is an error (only OTLP is built in). Without a
// provider, callers install no tracing at all, so it costs nothing.
//
// # What the environment configures
//
// The exporter speaks OTLP over HTTP with protobuf bodies, or over gRPC
// when OTEL_EXPORTER_OTLP_TRACES_PROTOCOL (or OTEL_EXPORTER_OTLP_PROTOCOL)
// is "grpc"; "http/json" is not supported. The exporters read their own
// variables: the endpoint, OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
// _COMPRESSION, _CERTIFICATE and _INSECURE, with their _TRACES_ forms.
// The SDK reads the sampler (OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG; default parentbased_always_on), the batch
// processor's limits (OTEL_BSP_*) and the resource (OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES). Propagator reads OTEL_PROPAGATORS:
// "tracecontext" (W3C traceparent and tracestate, the default), "baggage"
// and "none" are supported.
//
// # Lifecycle
//
// The provider batches spans and exports them in the background: call
// its Shutdown when the process stops, which flushes what is buffered
// (concord.App does at the end of Run).
package tracing
