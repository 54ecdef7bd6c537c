// Package ratelimit implements the three classic rate-limiting algorithms
// that Concord's admission interceptor applies, each with exact semantics,
// an injected clock for tests, no allocations per decision, and safety for
// concurrent use.
//
// # Token bucket
//
// A bucket holds at most Burst tokens and gains Rate tokens every Per; a
// call is admitted when a token is available and takes it. It is computed as
// the generic cell rate algorithm (GCRA): one timestamp per limiter, the
// theoretical arrival time, with emission interval T = Per/Rate. Starting
// full, it admits Burst calls at once and then one every T; over any
// interval of length d it admits at most Burst + d/T calls.
//
// # Sliding window
//
// At most Rate calls in any window of length Per, estimated from the count
// of the current fixed window and the previous one weighted by how much of
// it still overlaps the sliding window: estimate = prev*(1-elapsed/Per) +
// cur. A call is admitted when estimate+1 <= Rate. The estimate assumes the
// previous window's calls were spread evenly; with bursty traffic the true
// count in a sliding window can exceed Rate by at most the calls the
// previous window bunched at its end, and never exceeds 2*Rate.
//
// # Leaky bucket
//
// Calls leave at a fixed pace, one every T = Per/Rate. A call that arrives
// when the bucket is empty leaves at once; otherwise it waits for its slot.
// At most Queue calls wait; a call that would find the queue full is
// rejected at once, with the time after which it would fit. Waiting ends
// early when the caller's context does (the slot is then given back only if
// no later call took the next one, so a cancelled wait may cost one slot).
//
// # Rejections
//
// Every rejection carries a retry delay: the earliest time at which the same
// call would be admitted if nothing else arrived.
package ratelimit
