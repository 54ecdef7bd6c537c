package rpc

import (
	"context"
	"log/slog"
	"time"

	"connectrpc.com/connect/v2"
)

// NewLoggingInterceptor returns an interceptor that writes one log line per
// finished call: procedure, protocol, peer, code and duration. Successful
// calls log at level; failed calls at Warn, or Error for internal, unknown
// and data_loss. It costs almost nothing when the level is disabled.
func NewLoggingInterceptor(logger *slog.Logger, level slog.Level) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			if !logger.Enabled(ctx, min(level, slog.LevelWarn)) {
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
