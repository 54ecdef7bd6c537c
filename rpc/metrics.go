package rpc

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"
)

// CallReport describes one finished call, for metrics.
type CallReport struct {
	// Procedure is the method's path.
	Procedure string
	// Protocol is "connect", "grpc" or "grpcweb".
	Protocol string
	// Code is the call's status; 0 means success.
	Code connect.Code
	// Duration is the time spent in the handler chain.
	Duration time.Duration
	// ReceivedBytes and SentBytes are the uncompressed sizes of the last
	// request and response messages.
	ReceivedBytes, SentBytes int
}

// MetricsHook observes finished calls. It runs on the call's goroutine after
// the handler returns, so it must be fast and safe for concurrent use; export
// to Prometheus or OpenTelemetry from it.
type MetricsHook func(ctx context.Context, report CallReport)

// NewMetricsInterceptor returns an interceptor that calls hook once per
// finished call.
func NewMetricsInterceptor(hook MetricsHook) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			start := time.Now()
			err := next(ctx, spec, stream)
			report := CallReport{Procedure: spec.Procedure, Duration: time.Since(start)}
			if err != nil {
				report.Code = connect.CodeOf(err)
			}
			if info, ok := connect.CallInfoForServerContext(ctx); ok {
				report.Protocol = info.Protocol
				report.ReceivedBytes = info.ReceiveStats.Size
				report.SentBytes = info.SendStats.Size
			}
			hook(ctx, report)
			return err
		}
	}
}

// ClientCallReport describes one call a Conn's client finished, for
// metrics.
type ClientCallReport struct {
	// Service is the upstream's discovery name (from its ServicePolicy).
	Service string
	// Procedure is the method's path.
	Procedure string
	// Protocol is "connect", "grpc" or "grpcweb" ("" if the call had no
	// connect.CallInfo).
	Protocol string
	// Code is the call's status as the caller sees it; 0 means success.
	Code connect.Code
	// Duration is the whole call, retries and their backoff included.
	Duration time.Duration
	// Retries is how many attempts the call made after its first.
	Retries int
	// SentBytes and ReceivedBytes are the uncompressed sizes of the last
	// request and response messages (0 when none was sent or received).
	SentBytes, ReceivedBytes int
}

// ClientMetricsHook observes the calls a Conn's clients finish. It runs on
// the caller's goroutine as the call ends (for a stream, at its first
// error, its end or Close), so it must be fast and safe for concurrent
// use.
type ClientMetricsHook func(ctx context.Context, report ClientCallReport)

// WithClientMetrics has hook observe every call of the Conn's clients,
// from the outermost point of the client chain but tracing (see Conn).
// Default: none.
func WithClientMetrics(hook ClientMetricsHook) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.metrics = hook })
}

// retriesKey is the context key of a call's retry counter, which the
// client metrics interceptor puts and the retry interceptor counts on.
type retriesKey struct{}

// countRetry counts one retry of the call made with ctx, if its retries
// are observed.
func countRetry(ctx context.Context) {
	if n, ok := ctx.Value(retriesKey{}).(*atomic.Int32); ok {
		n.Add(1)
	}
}

// retriesContext is a call's context with its retry counter under
// retriesKey, kept in the call's meteredStream rather than allocated as a
// context.WithValue of its own.
type retriesContext struct {
	context.Context
	retries atomic.Int32
}

func (c *retriesContext) Value(key any) any {
	if key == (retriesKey{}) {
		return &c.retries
	}
	return c.Context.Value(key)
}

// newClientMetricsInterceptor reports each call of service's client to
// hook once, when it ends.
func newClientMetricsInterceptor(service string, hook ClientMetricsHook) connect.ClientInterceptor {
	return func(next connect.ClientFunc) connect.ClientFunc {
		return func(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
			m := &meteredStream{ctx: retriesContext{Context: ctx}, hook: hook, service: service, procedure: spec.Procedure, start: time.Now()}
			m.info, _ = connect.CallInfoForClientContext(ctx)
			stream, err := next(&m.ctx, spec)
			if err != nil {
				m.end(err)
				return nil, err
			}
			m.ClientStream = stream
			return m, nil
		}
	}
}

// meteredStream reports its call once: at the first error that is not the
// end of the stream, at the end of the responses, or at Close (where a
// unary call that succeeded ends: connect's CallUnary closes the stream
// after its one Receive).
type meteredStream struct {
	connect.ClientStream
	ctx                retriesContext // the call's (for the hook), and its retries
	hook               ClientMetricsHook
	service, procedure string
	info               *connect.CallInfo // the call's, or nil
	start              time.Time
	done               atomic.Bool
}

func (m *meteredStream) end(err error) {
	if !m.done.CompareAndSwap(false, true) {
		return
	}
	r := ClientCallReport{Service: m.service, Procedure: m.procedure, Duration: time.Since(m.start), Retries: int(m.ctx.retries.Load())}
	if m.info != nil {
		r.Protocol, r.SentBytes, r.ReceivedBytes = m.info.Protocol, m.info.SendStats.Size, m.info.ReceiveStats.Size
	}
	if err != nil && !errors.Is(err, io.EOF) {
		r.Code = connect.CodeOf(err)
	}
	m.hook(m.ctx.Context, r)
}

func (m *meteredStream) Send(msg any) error {
	err := m.ClientStream.Send(msg)
	if err != nil && !errors.Is(err, io.EOF) {
		m.end(err)
	}
	return err
}

func (m *meteredStream) Receive(msg any) error {
	err := m.ClientStream.Receive(msg)
	if err != nil {
		m.end(err) // io.EOF: the responses ended, a success
	}
	return err
}

func (m *meteredStream) Close() error {
	err := m.ClientStream.Close()
	m.end(nil)
	return err
}
