package rpc

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// NewValidateInterceptor returns an interceptor that validates every request
// message against its protovalidate rules before the handler sees it. A
// message that breaks a rule fails the call with invalid_argument; the error
// message lists the violations and a buf.validate.Violations detail carries
// them in structured form. A nil validator means protovalidate.New(), built
// on first use.
//
// With a nil validator, calls of a method whose request type has no rule
// (not in itself, its oneofs or fields, nor in any message reachable through
// its fields) skip validation altogether: protovalidate takes its rules only
// from those options, so it could not fail such a message. A validator given
// by the caller may check anything, so it sees every message.
func NewValidateInterceptor(validator protovalidate.Validator, logger *slog.Logger) connect.ServerInterceptor {
	return newValidation(validator, logger).interceptor()
}

// validation is the validate interceptor's state: the validator, built on
// first use (or by warm), and which request types have rules.
type validation struct {
	given  protovalidate.Validator // the caller's, or nil
	get    func() (protovalidate.Validator, error)
	built  atomic.Bool // the default validator was built
	rules  ruleCache
	logger *slog.Logger
}

func newValidation(validator protovalidate.Validator, logger *slog.Logger) *validation {
	v := &validation{given: validator, logger: logger}
	v.get = sync.OnceValues(func() (protovalidate.Validator, error) {
		if validator != nil {
			return validator, nil
		}
		v.built.Store(true)
		return protovalidate.New()
	})
	return v
}

func (v *validation) interceptor() connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			if v.given == nil {
				if md, ok := spec.Schema.(protoreflect.MethodDescriptor); ok && !v.rules.has(md.Input()) {
					return next(ctx, spec, stream)
				}
			}
			val, err := v.get()
			if err != nil {
				v.logger.ErrorContext(ctx, "rpc: protovalidate unavailable", slog.Any("error", err))
				return connect.NewError(connect.CodeInternal, "request validation unavailable")
			}
			return next(ctx, spec, &validatingStream{ServerStream: stream, validator: val, logger: v.logger, ctx: ctx})
		}
	}
}

// warm does ahead of the first calls what they would otherwise do on
// their own path: it decides which of the request types have rules, and,
// if any has, builds the default validator and compiles their rules (by
// validating an empty message of each; protovalidate keeps what it
// compiled per type). Its errors are the calls' to report, not warm's. A
// validator given by the caller is left alone: it may count, or expect
// generated types.
func (v *validation) warm(inputs []protoreflect.MessageDescriptor) {
	if v.given != nil {
		return
	}
	var ruled []protoreflect.MessageDescriptor
	for _, md := range inputs {
		if v.rules.has(md) {
			ruled = append(ruled, md)
		}
	}
	if len(ruled) == 0 {
		return
	}
	val, err := v.get()
	if err != nil {
		return
	}
	for _, md := range ruled {
		_ = val.Validate(dynamicpb.NewMessage(md))
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

// ruleCache remembers, per request type, whether it has protovalidate
// rules. It is keyed by the descriptor itself, whose hash is its address,
// not by its name, which would be hashed on every call: a type is described
// by one descriptor per process, and one described twice is only looked at
// twice.
type ruleCache struct{ m sync.Map } // protoreflect.MessageDescriptor -> bool

func (c *ruleCache) has(md protoreflect.MessageDescriptor) bool {
	if v, ok := c.m.Load(md); ok {
		return v.(bool) //nolint:forcetypeassert // the map holds only bools
	}
	has := hasRules(md, map[protoreflect.FullName]bool{})
	c.m.Store(md, has)
	return has
}

// hasRules reports whether protovalidate could find a rule for md: on the
// message, its oneofs or its fields, or on a message reachable through its
// fields (map values included). seen holds the messages already being
// looked at, for recursive types. It errs towards true: options with
// fields this binary cannot parse count as rules.
func hasRules(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	if mayHaveRule(md.Options(), validate.E_Message) {
		return true
	}
	oneofs := md.Oneofs()
	for i := range oneofs.Len() {
		if mayHaveRule(oneofs.Get(i).Options(), validate.E_Oneof) {
			return true
		}
	}
	fields := md.Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if mayHaveRule(f.Options(), validate.E_Field) {
			return true
		}
		if f.IsMap() {
			f = f.MapValue()
		}
		if m := f.Message(); m != nil && hasRules(m, seen) {
			return true
		}
	}
	return false
}

// mayHaveRule reports whether opts carries ext, or fields it could not
// parse, which may be ext.
func mayHaveRule(opts proto.Message, ext protoreflect.ExtensionType) bool {
	if opts == nil {
		return false
	}
	r := opts.ProtoReflect()
	if !r.IsValid() {
		return false
	}
	return len(r.GetUnknown()) > 0 || proto.HasExtension(opts, ext)
}
