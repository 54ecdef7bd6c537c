package rpc

import (
	"context"
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
