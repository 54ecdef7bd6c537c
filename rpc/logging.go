package rpc

import (
	"context"
	"log/slog"
	"time"

	"connectrpc.com/connect/v2"
)

// NewLoggingInterceptor returns an interceptor that writes one log line per
// finished call: procedure, protocol, peer, duration and, for failed calls,
// code and error. Successful calls log at level. Failed calls log at Error
// for internal, unknown and data_loss, which mean a bug or corrupt state on
// the server, and at Warn for every other code, including unavailable,
// which load shedding returns by design. Each line is written only if
// logger is enabled at its level, so with an Info-level logger and a level
// of Debug (WithCallLogLevel's default), only failed calls are logged. When
// logger is enabled at none of level, Warn and Error, the interceptor adds
// only those Enabled checks to a call. NewServer makes it the outermost
// link of the chain, outside panic recovery, so it logs panics as the
// internal errors that callers get.
func NewLoggingInterceptor(logger *slog.Logger, level slog.Level) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			// The outcome, and so the level, is unknown until the call
			// ends: skip the work only if no outcome could be logged.
			if !logger.Enabled(ctx, level) && !logger.Enabled(ctx, slog.LevelWarn) && !logger.Enabled(ctx, slog.LevelError) {
				return next(ctx, spec, stream)
			}
			start := time.Now()
			err := next(ctx, spec, stream)
			lvl := level
			code := connect.CodeOf(err)
			switch {
			case err == nil:
			case code == connect.CodeInternal || code == connect.CodeUnknown || code == connect.CodeDataLoss:
				lvl = slog.LevelError
			default:
				lvl = slog.LevelWarn
			}
			if !logger.Enabled(ctx, lvl) {
				return err
			}
			attrs := []slog.Attr{
				slog.String("procedure", spec.Procedure),
				slog.Duration("duration", time.Since(start)),
			}
			if info, ok := connect.CallInfoForServerContext(ctx); ok {
				attrs = append(attrs, slog.String("protocol", info.Protocol), slog.String("peer", info.PeerAddr))
			}
			if err != nil {
				attrs = append(attrs, slog.String("code", code.String()), slog.String("error", err.Error()))
			}
			logger.LogAttrs(ctx, lvl, "rpc call", attrs...)
			return err
		}
	}
}
