package rpc

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/concordrpc/concord/internal/spanerr"
)

// tracerName is the instrumentation scope of rpc's spans.
const tracerName = "github.com/concordrpc/concord/rpc"

// Attribute keys of the OpenTelemetry RPC semantic conventions.
const (
	attrRPCSystem       = attribute.Key("rpc.system")
	attrRPCService      = attribute.Key("rpc.service")
	attrRPCMethod       = attribute.Key("rpc.method")
	attrGRPCStatusCode  = attribute.Key("rpc.grpc.status_code")
	attrConnectErrorKey = attribute.Key("rpc.connect_rpc.error_code")
)

// maxStatusText bounds the error text a span's status carries, in bytes:
// a peer's error message is the peer's to choose.
const maxStatusText = 256

// WithTracing makes the server start a span for every call
// (NewTracingInterceptor), as the outermost link of the chain, continuing
// the caller's trace from the request headers with prop. A nil tp means
// no tracing; a nil prop means propagation.TraceContext (W3C traceparent
// and tracestate). Default: no tracing, and no interceptor at all.
func WithTracing(tp trace.TracerProvider, prop propagation.TextMapPropagator) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.tracer, c.propagator = tp, prop })
}

// WithClientTracing makes every call of the Conn's clients start a client
// span (NewClientTracingInterceptor), outside every other client
// interceptor, and send its context to the server in the request headers
// with prop. A nil tp means no tracing; a nil prop means
// propagation.TraceContext (W3C traceparent and tracestate). Default: no
// tracing, and no interceptor at all.
func WithClientTracing(tp trace.TracerProvider, prop propagation.TextMapPropagator) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.tracer, c.propagator = tp, prop })
}

// NewTracingInterceptor returns a server interceptor that starts a server
// span for every call, named after the procedure ("package.Service/Method")
// with the RPC semantic conventions' attributes: rpc.system ("connect_rpc"
// for the Connect protocol, "grpc" for gRPC and gRPC-Web), rpc.service,
// rpc.method and the status (rpc.grpc.status_code, or
// rpc.connect_rpc.error_code on failure). The span continues the trace
// that prop extracts from the request headers; a header that does not
// parse is ignored (the call starts a new trace). Following the
// conventions, a server span's status is an error only for codes that say
// the server failed: unknown, deadline_exceeded, unimplemented, internal,
// unavailable and data_loss. Health checks (grpc.health.v1) and
// reflection are not traced. The handler's context carries the span, so
// calls it makes through a traced Conn are its children. NewServer puts
// it first in the chain (WithTracing), so the span covers logging,
// metrics and recovery, and a panic shows as internal. A nil prop means
// propagation.TraceContext.
func NewTracingInterceptor(tp trace.TracerProvider, prop propagation.TextMapPropagator) connect.ServerInterceptor {
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	tracer := tp.Tracer(tracerName, trace.WithInstrumentationVersion(Version))
	var names procNames
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			if untraced(spec.Procedure) {
				return next(ctx, spec, stream)
			}
			protocol := ""
			if info, ok := connect.CallInfoForServerContext(ctx); ok {
				protocol = info.Protocol
				ctx = prop.Extract(ctx, headerCarrier{info.RequestHeader()})
			}
			n := names.get(spec.Procedure, trace.SpanKindServer)
			ctx, span := tracer.Start(ctx, n.span, n.start...)
			if span.IsRecording() {
				span.SetAttributes(n.attrs(protocol)...)
			}
			err := next(ctx, spec, stream)
			endSpan(span, protocol, err, serverFault)
			return err
		}
	}
}

// NewClientTracingInterceptor returns a client interceptor that starts a
// client span for every call, named and described like the server's spans
// (see NewTracingInterceptor), and injects its context into the request
// headers with prop, for every protocol. The span ends when the call
// does: when Receive reports the end of the stream or an error, or at
// Close. Any failure sets the span's status to error. A Conn with
// WithClientTracing puts it outside every other client interceptor, so one
// span covers the retries of a call; each retry adds an "rpc.retry" event
// to it. A nil prop means propagation.TraceContext.
func NewClientTracingInterceptor(tp trace.TracerProvider, prop propagation.TextMapPropagator, protocol Protocol) connect.ClientInterceptor {
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	tracer := tp.Tracer(tracerName, trace.WithInstrumentationVersion(Version))
	proto := connect.ProtocolNameConnect
	switch protocol {
	case ProtocolGRPC:
		proto = connect.ProtocolNameGRPC
	case ProtocolGRPCWeb:
		proto = connect.ProtocolNameGRPCWeb
	}
	var names procNames
	return func(next connect.ClientFunc) connect.ClientFunc {
		return func(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
			n := names.get(spec.Procedure, trace.SpanKindClient)
			ctx, span := tracer.Start(ctx, n.span, n.start...)
			if span.IsRecording() {
				span.SetAttributes(n.attrs(proto)...)
			}
			if info, ok := connect.CallInfoForClientContext(ctx); ok {
				prop.Inject(ctx, headerCarrier{info.RequestHeader()})
			}
			stream, err := next(ctx, spec)
			if !span.IsRecording() {
				// Unsampled: its context went out in the headers, and
				// there is nothing to record, so there is no end to
				// watch for either.
				span.End()
				return stream, err
			}
			if err != nil {
				endSpan(span, proto, err, anyFault)
				return nil, err
			}
			return &tracedStream{ClientStream: stream, span: span, protocol: proto}, nil
		}
	}
}

// untraced reports whether procedure is a health check or reflection,
// which probes call often and which say nothing about the application.
func untraced(procedure string) bool {
	return strings.HasPrefix(procedure, "/grpc.health.v1.") || strings.HasPrefix(procedure, "/grpc.reflection.")
}

// procName is a procedure's span name, kind and attributes, built once.
// The attributes are set once a span is known to record, not passed to
// Start: no built-in sampler reads them, and an unsampled call (tracing
// on, sampling off) then pays for none of them.
type procName struct {
	span string
	// start holds the span kind: Start's options, kept so that passing
	// them allocates nothing.
	start         []trace.SpanStartOption
	connect, grpc []attribute.KeyValue // rpc.system "connect_rpc" or "grpc"
}

// attrs returns the span attributes for a call over protocol.
func (n *procName) attrs(protocol string) []attribute.KeyValue {
	if protocol == connect.ProtocolNameConnect {
		return n.connect
	}
	return n.grpc // gRPC-Web carries gRPC's semantics
}

// procNames caches the procNames of procedures. Only registered (server)
// or generated (client) procedures reach an interceptor that Server or
// Conn installs; the cache is bounded anyway (maxProcNames, and names up
// to maxProcNameLen bytes), for an interceptor that a user puts before an
// unknown-procedure handler, where callers choose the path.
type procNames struct {
	m sync.Map
	n atomic.Int64
}

// Bounds of procNames.
const (
	maxProcNames   = 4096
	maxProcNameLen = 256
)

func (p *procNames) get(procedure string, kind trace.SpanKind) *procName {
	if v, ok := p.m.Load(procedure); ok {
		return v.(*procName)
	}
	n := newProcName(spanerr.Truncate(procedure, maxProcNameLen), kind)
	if len(procedure) > maxProcNameLen || p.n.Add(1) > maxProcNames {
		return n
	}
	v, _ := p.m.LoadOrStore(procedure, n)
	return v.(*procName)
}

func newProcName(procedure string, kind trace.SpanKind) *procName {
	name := strings.TrimPrefix(procedure, "/")
	service, method := name, ""
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		service, method = name[:i], name[i+1:]
	}
	attrs := func(system string) []attribute.KeyValue {
		return []attribute.KeyValue{attrRPCSystem.String(system), attrRPCService.String(service), attrRPCMethod.String(method)}
	}
	return &procName{span: name, start: []trace.SpanStartOption{trace.WithSpanKind(kind)}, connect: attrs("connect_rpc"), grpc: attrs("grpc")}
}

// serverFault reports whether code says the server failed, which makes a
// server span's status an error (the RPC semantic conventions).
func serverFault(code connect.Code) bool {
	switch code {
	case connect.CodeUnknown, connect.CodeDeadlineExceeded, connect.CodeUnimplemented,
		connect.CodeInternal, connect.CodeUnavailable, connect.CodeDataLoss:
		return true
	}
	return false
}

func anyFault(connect.Code) bool { return true }

// endSpan records err's status on span and ends it.
func endSpan(span trace.Span, protocol string, err error, isError func(connect.Code) bool) {
	if !span.IsRecording() {
		span.End()
		return
	}
	var code connect.Code // 0: OK
	if err != nil && !errors.Is(err, io.EOF) {
		code = connect.CodeOf(err)
	}
	if protocol == connect.ProtocolNameConnect {
		if code != 0 {
			span.SetAttributes(attrConnectErrorKey.String(connectErrorCode(code)))
		}
	} else {
		span.SetAttributes(attrGRPCStatusCode.Int(int(code)))
	}
	if code != 0 && isError(code) {
		span.SetStatus(codes.Error, spanerr.Truncate(err.Error(), maxStatusText))
	}
	span.End()
}

// connectErrorCode is the conventions' name of code, which spells
// canceled as "cancelled".
func connectErrorCode(code connect.Code) string {
	if code == connect.CodeCanceled {
		return "cancelled"
	}
	return code.String()
}

// tracedStream ends its call's span when the call ends: at the first
// error from Send or CloseSend (but io.EOF from Send, after which Receive
// has the answer) or from Receive (where io.EOF is success), or at
// Close.
type tracedStream struct {
	connect.ClientStream
	span     trace.Span
	protocol string
	once     sync.Once
}

func (s *tracedStream) end(err error) {
	s.once.Do(func() { endSpan(s.span, s.protocol, err, anyFault) })
}

func (s *tracedStream) Send(msg any) error {
	err := s.ClientStream.Send(msg)
	if err != nil && !errors.Is(err, io.EOF) { // io.EOF: the answer comes from Receive
		s.end(err)
	}
	return err
}

func (s *tracedStream) CloseSend() error {
	err := s.ClientStream.CloseSend()
	if err != nil {
		s.end(err)
	}
	return err
}

func (s *tracedStream) Receive(msg any) error {
	err := s.ClientStream.Receive(msg)
	if err != nil {
		s.end(err)
	}
	return err
}

func (s *tracedStream) Close() error {
	err := s.ClientStream.Close()
	s.end(nil)
	return err
}

// headerCarrier adapts a connect.Header to a propagation.TextMapCarrier.
type headerCarrier struct{ h *connect.Header }

func (c headerCarrier) Get(key string) string { return c.h.Get(canonicalKey(key)) }
func (c headerCarrier) Set(key, value string) { c.h.Set(canonicalKey(key), value) }
func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, c.h.Len())
	for k := range c.h.All() {
		keys = append(keys, k)
	}
	return keys
}

// canonicalKey returns the canonical form of the W3C headers without the
// allocation that canonicalising a lowercase key costs on every call;
// other keys pass as they are (connect.Header canonicalises them).
func canonicalKey(key string) string {
	switch key {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	case "baggage":
		return "Baggage"
	}
	return key
}
