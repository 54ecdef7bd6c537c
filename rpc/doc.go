// Package rpc is Concord's RPC runtime, the code that generated code calls.
//
// A Server serves protobuf services over Connect, gRPC and gRPC-Web on one
// port, with health, reflection and a default interceptor chain (tracing
// when configured, logging, metrics, panic recovery, deadlines, admission, protovalidate validation,
// TCC, fencing) driven by the method policies that protoc-gen-concord builds from the
// (concord.v1.*) options. A Conn builds clients that reach a service at a
// fixed URL or through a Resolver, and apply the client side of the same
// policies.
//
// For status pages and metrics, a Server reports its rate limits
// (LimitStatus: admitted, refused, borrowed tokens, saturation) and shed
// calls (ShedCalls); a resolving Conn reports the circuit breakers of each
// upstream instance (BreakerStatus) and feeds a hook with each client call
// (WithClientMetrics). None of these does I/O.
//
// rpc knows nothing of NATS or Badger. Coordination features reach it
// through small interfaces that package coord implements: Resolver,
// LimiterStore and FencingGuard. TCC participants plug into the TCC slot
// of the chain (WithTCCParticipant, package tcc); the coordinator lives in
// package tcc too.
//
// # Failure behaviour
//
// Bad input never crashes the server: malformed messages, unknown methods,
// wrong content types and oversized bodies get a Connect error with a
// standard code; a panicking handler gets internal; a request that breaks
// its protovalidate rules gets invalid_argument with buf.validate.Violations
// details. Errors that are not *connect.Error reach clients as a bare code
// without their text.
package rpc
