package rpc

import (
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"connectrpc.com/connect/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
)

// Retry budget defaults: retries add at most DefaultRetryRatio extra load,
// plus a reserve of DefaultRetryReserve retries for quiet periods.
const (
	DefaultRetryRatio   = 0.1
	DefaultRetryReserve = 10
)

// Fallback degrades a failed unary call: it gets the request, the response
// to fill, and the call's final error, and returns nil to make the call
// succeed with res, or an error to fail it.
type Fallback func(ctx context.Context, spec connect.Spec, req, res any, err error) error

// retryBudget caps retries: each call deposits ratio of a token, each retry
// withdraws a whole one, and the balance never exceeds reserve plus what
// recent calls earned. So over any run of n calls, retries are at most
// reserve + ratio*n.
type retryBudget struct {
	ratio, reserve float64

	mu      sync.Mutex
	balance float64
}

func newRetryBudget(ratio float64, reserve int) *retryBudget {
	return &retryBudget{ratio: ratio, reserve: float64(reserve), balance: float64(reserve)}
}

func (b *retryBudget) deposit() {
	b.mu.Lock()
	b.balance = math.Min(b.balance+b.ratio, b.reserve+1)
	b.mu.Unlock()
}

func (b *retryBudget) withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.balance < 1 {
		return false
	}
	b.balance--
	return true
}

// newRetryInterceptor retries failed unary calls of methods whose policy
// has a Retry (which codegen allows only on idempotent methods) with
// exponential backoff and full jitter, within the budget and never past the
// deadline, and applies fallback to calls that still fail.
func newRetryInterceptor(lookup PolicyLookup, budget *retryBudget, fallback Fallback) connect.ClientInterceptor {
	return func(next connect.ClientFunc) connect.ClientFunc {
		return func(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
			if spec.StreamType != connect.StreamTypeUnary {
				return next(ctx, spec)
			}
			var retry *RetryPolicy
			if p := lookup(spec.Procedure); p != nil {
				retry = p.Retry
			}
			if retry == nil && fallback == nil {
				return next(ctx, spec)
			}
			return &retryStream{ctx: ctx, spec: spec, next: next, policy: retry, budget: budget, fallback: fallback}, nil
		}
	}
}

// retryStream runs a unary call's attempts when the response is received:
// Send keeps the request, Receive makes attempts until one succeeds.
type retryStream struct {
	ctx      context.Context //nolint:containedctx // the call's context, bound by the transport contract
	spec     connect.Spec
	next     connect.ClientFunc
	policy   *RetryPolicy
	budget   *retryBudget
	fallback Fallback

	req      any
	cur      connect.ClientStream // the successful attempt's stream
	finished bool                 // a response (or fallback) was delivered
}

func (s *retryStream) SendHeaders() error { return nil }
func (s *retryStream) CloseSend() error   { return nil }

func (s *retryStream) Send(msg any) error {
	s.req = msg
	return nil
}

func (s *retryStream) Receive(res any) error {
	if s.finished {
		if s.cur != nil {
			return s.cur.Receive(res)
		}
		return io.EOF
	}
	s.finished = true
	s.budget.deposit()
	err := s.attempts(res)
	if err != nil && s.fallback != nil {
		if m, ok := res.(proto.Message); ok {
			proto.Reset(m)
		}
		err = s.fallback(s.ctx, s.spec, s.req, res, err)
	}
	return err
}

func (s *retryStream) attempts(res any) error {
	maxAttempts := 1
	if s.policy != nil {
		maxAttempts = max(s.policy.MaxAttempts, 1)
	}
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			countRetry(s.ctx)
		}
		if m, ok := res.(proto.Message); ok {
			proto.Reset(m)
		}
		stream, err := s.next(s.ctx, s.spec)
		if err == nil {
			if err = stream.Send(s.req); err == nil {
				if err = stream.CloseSend(); err == nil {
					err = stream.Receive(res)
				}
			}
			if err == nil {
				s.cur = stream
				return nil
			}
			_ = stream.Close()
		}
		if attempt >= maxAttempts || !s.retryable(err) || s.ctx.Err() != nil {
			return err
		}
		wait := s.backoff(attempt)
		if dl, ok := s.ctx.Deadline(); ok && time.Until(dl) <= wait {
			return err // the retry could not finish in time
		}
		if !s.budget.withdraw() {
			return err
		}
		// The call's span (WithClientTracing) shows each retry; without
		// one this is a no-op span.
		trace.SpanFromContext(s.ctx).AddEvent("rpc.retry", trace.WithAttributes(
			attribute.Int("rpc.attempt", attempt+1), attribute.String("rpc.retry.after_code", connect.CodeOf(err).String())))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return err
		}
	}
}

func (s *retryStream) retryable(err error) bool {
	code := connect.CodeOf(err)
	if transportFailure(s.ctx, err) {
		code = connect.CodeUnavailable // the instance could not be reached or dropped the call
	}
	for _, c := range s.policy.RetryableCodes {
		if c == code {
			return true
		}
	}
	return false
}

// transportFailure reports whether err is a failure to reach an instance or
// to hear its answer (a refused or reset connection), as opposed to the
// instance's own answer or the caller giving up. It counts as unavailable.
func transportFailure(ctx context.Context, err error) bool {
	if err == nil || errors.Is(err, io.EOF) || ctx.Err() != nil {
		return false
	}
	var cerr *connect.Error
	if errors.As(err, &cerr) && cerr.IsRemote() {
		return false
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeCanceled, connect.CodeUnknown, connect.CodeInternal:
		return true
	}
	return false
}

// backoff is full jitter over an exponential ceiling.
func (s *retryStream) backoff(attempt int) time.Duration {
	ceiling := float64(s.policy.InitialBackoff) * math.Pow(max(s.policy.Multiplier, 1), float64(attempt-1))
	if limit := float64(s.policy.MaxBackoff); limit > 0 && ceiling > limit {
		ceiling = limit
	}
	if ceiling < 1 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(ceiling)) + 1)
}

func (s *retryStream) Close() error {
	if s.cur != nil {
		return s.cur.Close()
	}
	return nil
}
