package rpc

import (
	"time"

	"connectrpc.com/connect/v2"
)

// ServicePolicy is the policy table of one service, as declared by its
// Concord options. protoc-gen-concord emits a function that returns it; the
// server and generated clients apply it.
type ServicePolicy struct {
	// Name is the fully-qualified protobuf service name.
	Name string
	// DiscoveryName is the name under which the service registers and is
	// resolved: the (concord.v1.service).name option, or Name.
	DiscoveryName string
	// Methods holds one entry per method, in declaration order.
	Methods []MethodPolicy
}

// Method returns the policy of procedure ("/pkg.Service/Method"), or nil.
func (p *ServicePolicy) Method(procedure string) *MethodPolicy {
	if p == nil {
		return nil
	}
	for i := range p.Methods {
		if p.Methods[i].Procedure == procedure {
			return &p.Methods[i]
		}
	}
	return nil
}

// MethodPolicy holds the policies of one method. A nil pointer field means
// the policy is off.
type MethodPolicy struct {
	// Procedure is the method's path, "/pkg.Service/Method".
	Procedure string
	// StreamType is the method's streaming shape.
	StreamType connect.StreamType
	// Idempotency is the method's declared idempotency level.
	Idempotency connect.IdempotencyLevel
	// Timeout bounds the whole call; 0 means none.
	Timeout time.Duration
	// Retry is the client's retry policy.
	Retry *RetryPolicy
	// RateLimit is the server's admission limit.
	RateLimit *RateLimitPolicy
	// CircuitBreaker is the client's per-instance breaker.
	CircuitBreaker *BreakerPolicy
	// Fencing, when set, makes the server check the fencing tokens calls
	// carry (see NewFencingInterceptor); methods without it ignore them.
	Fencing *FencingPolicy
	// TCC is set on the Try method of a TCC branch.
	TCC *TCCPolicy
}

// FencingPolicy is a fenced method's policy.
type FencingPolicy struct {
	// Required refuses calls that carry no fencing token.
	Required bool
}

// RetryPolicy retries failed calls of idempotent unary methods with
// exponential backoff and full jitter.
type RetryPolicy struct {
	// MaxAttempts counts every attempt, the first included.
	MaxAttempts int
	// InitialBackoff is the backoff before the first retry.
	InitialBackoff time.Duration
	// MaxBackoff caps the backoff.
	MaxBackoff time.Duration
	// Multiplier grows the backoff after each retry.
	Multiplier float64
	// RetryableCodes are the codes that are retried.
	RetryableCodes []connect.Code
}

// Algorithm is a rate-limiting algorithm.
type Algorithm uint8

// The rate-limiting algorithms.
const (
	// TokenBucket refills Rate tokens every Per, holds at most Burst.
	TokenBucket Algorithm = iota + 1
	// SlidingWindow admits at most Rate calls in any window of length Per.
	SlidingWindow
	// LeakyBucket lets one call through every Per/Rate and queues at most
	// Burst callers.
	LeakyBucket
)

// String returns the algorithm's option name.
func (a Algorithm) String() string {
	switch a {
	case TokenBucket:
		return "token_bucket"
	case SlidingWindow:
		return "sliding_window"
	case LeakyBucket:
		return "leaky_bucket"
	}
	return "unknown"
}

// Scope says where a rate limit is counted.
type Scope uint8

// The scopes of a rate limit.
const (
	// ScopeLocal counts on each instance on its own.
	ScopeLocal Scope = iota
	// ScopeCluster shares one limit among all instances of a service.
	ScopeCluster
)

// KeyKind says which calls share a rate limit.
type KeyKind uint8

// The kinds of rate-limit keys.
const (
	// KeyNone: one limit for the method.
	KeyNone KeyKind = iota
	// KeyHeader: one limit per value of a request header. Values are
	// hashed to a fixed-size digest before they reach a limiter map, the
	// LimiterStore or a coordination key, so a caller cannot use a long or
	// odd value to grow memory or break a subject.
	KeyHeader
	// KeyPeer: one limit per client address.
	KeyPeer
	// KeySubject: one limit per authenticated subject.
	KeySubject
)

// RateLimitPolicy is a method's admission limit.
type RateLimitPolicy struct {
	// Algorithm is the limiter algorithm.
	Algorithm Algorithm
	// Rate is the number of calls (tokens) per Per.
	Rate int
	// Per is the period of Rate.
	Per time.Duration
	// Burst is the bucket capacity (TokenBucket) or queue size
	// (LeakyBucket); unused by SlidingWindow.
	Burst int
	// Scope says where the limit is counted.
	Scope Scope
	// Key says which calls share a limit.
	Key KeyKind
	// Header is the header name when Key is KeyHeader.
	Header string
}

// BreakerPolicy configures a client-side circuit breaker.
type BreakerPolicy struct {
	// FailureRatio opens the breaker when reached.
	FailureRatio float64
	// MinRequests is the number of calls in Window before the ratio counts.
	MinRequests int
	// Window is the rolling window.
	Window time.Duration
	// OpenFor is how long the breaker stays open before probing.
	OpenFor time.Duration
	// HalfOpenProbes is the number of successful probes that close it.
	HalfOpenProbes int
}

// TCCPolicy marks the Try method of a TCC branch.
type TCCPolicy struct {
	// ConfirmProcedure is the procedure of the Confirm method.
	ConfirmProcedure string
	// CancelProcedure is the procedure of the Cancel method.
	CancelProcedure string
}
