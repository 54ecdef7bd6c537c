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
// A Breaker is safe for concurrent use; Allow and Done cost a mutex and no
// allocation.
package breaker
