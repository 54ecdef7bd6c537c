package rpc

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"connectrpc.com/connect/v2"
)

// NewRecoverInterceptor returns an interceptor that turns a panic in the rest
// of the chain or in the handler into an internal error. The client sees
// only "internal error"; the panic value and stack go to logger at Error.
// http.ErrAbortHandler is re-panicked, as net/http expects.
func NewRecoverInterceptor(logger *slog.Logger) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) (err error) {
			defer func() {
				r := recover()
				if r == nil {
					return
				}
				if e, ok := r.(error); ok && e.Error() == "net/http: abort Handler" {
					panic(r)
				}
				logger.ErrorContext(ctx, "rpc: handler panicked",
					slog.String("procedure", spec.Procedure),
					slog.String("panic", fmt.Sprint(r)),
					slog.String("stack", string(debug.Stack())))
				err = connect.NewError(connect.CodeInternal, "internal error")
			}()
			return next(ctx, spec, stream)
		}
	}
}
