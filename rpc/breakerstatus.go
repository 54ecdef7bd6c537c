package rpc

import (
	"cmp"
	"maps"
	"slices"

	"github.com/concordrpc/concord/rpc/breaker"
)

// BreakerStatus is the state of the circuit breakers of one instance of
// an upstream service, as a resolving Conn sees it, for status pages and
// metrics.
type BreakerStatus struct {
	// Service is the upstream's discovery name.
	Service string `json:"service"`
	// Instance and Address are the instance's ID and base URL, as the
	// resolver last listed them.
	Instance string `json:"instance"`
	Address  string `json:"address"`
	// State is "closed", "open" or "half_open": the worst state of the
	// instance's breakers (one per method with a CircuitBreaker policy),
	// open first; "closed" when no call has made a breaker for it yet.
	State string `json:"state"`
	// Failures is the longest streak of failed calls in a row among those
	// breakers (see breaker.Breaker.Failures): calls that counted against
	// the instance, up to now, with no success in between.
	Failures int `json:"failures"`
	// InFlight is the number of the Conn's calls to the instance that
	// have not ended (attempts: a retry elsewhere counts there), the
	// count the balancer weighs instances by.
	InFlight int64 `json:"in_flight"`
}

// BreakerStatus returns the breakers of every instance of every service
// the Conn resolved, as the last answer for each service lists them,
// sorted by service and instance ID. A Conn with a fixed base URL
// (NewConn) returns nil: it does not know the service's discovery name.
// It does no I/O; the list is as long as the instances the resolver
// answered with (bounded by the registry), and it is safe for concurrent
// use.
func (c *Conn) BreakerStatus() []BreakerStatus {
	if c.resolver == nil {
		return nil
	}
	c.mu.Lock()
	answers := maps.Clone(c.answers)
	c.mu.Unlock()
	var out []BreakerStatus
	for _, service := range slices.Sorted(maps.Keys(answers)) {
		ans := answers[service]
		for i, in := range ans.instances {
			st, failures := ans.endpoints[i].breakerState()
			out = append(out, BreakerStatus{Service: service, Instance: in.ID, Address: in.BaseURL, State: st, Failures: failures,
				InFlight: ans.endpoints[i].inFlight.Load()})
		}
	}
	slices.SortStableFunc(out, func(x, y BreakerStatus) int {
		return cmp.Or(cmp.Compare(x.Service, y.Service), cmp.Compare(x.Instance, y.Instance))
	})
	return out
}

// breakerState returns the worst state of the endpoint's breakers and the
// longest failure streak among them.
func (e *endpoint) breakerState() (string, int) {
	e.mu.Lock()
	brs := slices.Collect(maps.Values(e.breakers))
	e.mu.Unlock()
	worst, failures := breaker.Closed, 0
	for _, b := range brs {
		switch s := b.State(); {
		case s == breaker.Open:
			worst = breaker.Open
		case s == breaker.HalfOpen && worst != breaker.Open:
			worst = breaker.HalfOpen
		}
		failures = max(failures, b.Failures())
	}
	return breakerStateName(worst), failures
}

func breakerStateName(s breaker.State) string {
	switch s {
	case breaker.Open:
		return "open"
	case breaker.HalfOpen:
		return "half_open"
	}
	return "closed"
}
