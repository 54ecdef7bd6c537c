package rpc

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/protobuf/proto"
)

// NewValidateInterceptor returns an interceptor that validates every request
// message against its protovalidate rules before the handler sees it. A
// message that breaks a rule fails the call with invalid_argument; the error
// message lists the violations and a buf.validate.Violations detail carries
// them in structured form. A nil validator means protovalidate.New(), built
// on first use.
func NewValidateInterceptor(validator protovalidate.Validator, logger *slog.Logger) connect.ServerInterceptor {
	get := sync.OnceValues(func() (protovalidate.Validator, error) {
		if validator != nil {
			return validator, nil
		}
		return protovalidate.New()
	})
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			v, err := get()
			if err != nil {
				logger.ErrorContext(ctx, "rpc: protovalidate unavailable", slog.Any("error", err))
				return connect.NewError(connect.CodeInternal, "request validation unavailable")
			}
			return next(ctx, spec, &validatingStream{ServerStream: stream, validator: v, logger: logger, ctx: ctx})
		}
	}
}

type validatingStream struct {
	connect.ServerStream
	validator protovalidate.Validator
	logger    *slog.Logger
	ctx       context.Context //nolint:containedctx // the stream's own call context, for logging
}

func (s *validatingStream) Receive(msg any) error {
	if err := s.ServerStream.Receive(msg); err != nil {
		return err
	}
	m, ok := msg.(proto.Message)
	if !ok {
		return nil
	}
	return validationError(s.ctx, s.logger, s.validator.Validate(m))
}

// validationError maps a protovalidate result to a Connect error.
func validationError(ctx context.Context, logger *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) {
		// Compilation and runtime errors mean broken rules, not bad input.
		logger.ErrorContext(ctx, "rpc: request validation failed to run", slog.Any("error", err))
		return connect.NewError(connect.CodeInternal, "request validation failed to run")
	}
	cerr := connect.NewError(connect.CodeInvalidArgument, verr.Error())
	if detail, derr := connectproto.NewErrorDetail(verr.ToProto()); derr == nil {
		cerr = cerr.WithDetail(detail)
	}
	return cerr
}
