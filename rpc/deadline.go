package rpc

import (
	"context"
	"time"

	"connectrpc.com/connect/v2"
)

// PolicyLookup returns the policy of a procedure, or nil when it has none.
type PolicyLookup func(procedure string) *MethodPolicy

// NewDeadlineInterceptor returns a server interceptor that bounds each call
// by its method's Timeout: the call's context ends at the earlier of the
// caller's deadline and now+Timeout. Handlers see the context end and the
// caller gets deadline_exceeded.
func NewDeadlineInterceptor(lookup PolicyLookup) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			ctx, cancel := withPolicyTimeout(ctx, lookup(spec.Procedure))
			if cancel != nil {
				defer cancel()
			}
			return next(ctx, spec, stream)
		}
	}
}

// NewClientDeadlineInterceptor returns a client interceptor that gives a call
// its method's Timeout when the caller set no earlier deadline. The deadline
// travels to the server in the protocol's timeout header, so every hop
// downstream sees what remains of it.
func NewClientDeadlineInterceptor(lookup PolicyLookup) connect.ClientInterceptor {
	return func(next connect.ClientFunc) connect.ClientFunc {
		return func(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
			ctx, cancel := withPolicyTimeout(ctx, lookup(spec.Procedure))
			if cancel == nil {
				return next(ctx, spec)
			}
			stream, err := next(ctx, spec)
			if err != nil {
				cancel()
				return nil, err
			}
			return &cancelStream{ClientStream: stream, cancel: cancel}, nil
		}
	}
}

// withPolicyTimeout applies p's timeout to ctx. It returns a nil cancel func
// when ctx already ends no later than the timeout would.
func withPolicyTimeout(ctx context.Context, p *MethodPolicy) (context.Context, context.CancelFunc) {
	if p == nil || p.Timeout <= 0 {
		return ctx, nil
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= p.Timeout {
		return ctx, nil
	}
	return context.WithTimeout(ctx, p.Timeout)
}

// cancelStream releases a per-call context when the stream ends: on Close,
// or when Receive reports the end of the stream or an error.
type cancelStream struct {
	connect.ClientStream
	cancel context.CancelFunc
}

func (s *cancelStream) Receive(msg any) error {
	err := s.ClientStream.Receive(msg)
	if err != nil {
		s.cancel()
	}
	return err
}

func (s *cancelStream) Close() error {
	err := s.ClientStream.Close()
	s.cancel()
	return err
}
