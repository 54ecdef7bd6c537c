// Package breaker implements the circuit breaker that Concord's clients
// keep per upstream instance and method.
//
// # Algorithm
//
// Error ratio with half-open probes. While closed, the breaker counts
// outcomes in a rolling window (ten buckets of Window/10). When the window
// holds at least MinRequests outcomes and failures/total reaches
// FailureRatio, it opens: calls fail fast for OpenFor. Then it is half-open:
// it lets at most HalfOpenProbes calls through at a time; HalfOpenProbes
// successes close it (with an empty window), and any failure opens it again
// for another OpenFor.
//
// Each change of state starts a new generation, and a call's outcome counts
// only in the generation that admitted it (Allow returns it in a Ticket). So
// the probes are exactly the calls admitted while half-open: a slow call
// admitted while closed cannot close or reopen a half-open breaker, and a
// probe that ends after its half-open period cannot count in the next one.
// A call that ends with no outcome, such as one its caller gave up on, is
// reported with Abandon: it counts neither way and frees its probe slot.
//
// A Breaker is safe for concurrent use; Allow, Done and Abandon cost a mutex
// and no allocation.
package breaker
