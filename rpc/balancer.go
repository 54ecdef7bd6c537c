package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/concordrpc/concord/rpc/breaker"
)

// Balancing selects how a Conn spreads calls over a service's instances.
type Balancing uint8

// The balancing policies.
const (
	// BalanceP2C picks two instances at random and sends the call to the
	// one with the lower load: (calls in flight + 1) × EWMA latency. Slow or
	// busy instances get less traffic. The default.
	BalanceP2C Balancing = iota
	// BalanceRoundRobin takes the instances in turn.
	BalanceRoundRobin
)

// DefaultProbation is how long an instance that failed to connect is kept
// out of rotation.
const DefaultProbation = 5 * time.Second

// WithBalancing selects the balancing policy. Default: BalanceP2C.
func WithBalancing(b Balancing) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.balancing = b })
}

// WithZone prefers instances in zone: calls go to them while any is
// eligible, and to other zones only when none is. Default: no preference.
func WithZone(zone string) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.zone = zone })
}

// WithProbation sets how long an instance that gave a connection error is
// ejected; after it, the instance is readmitted and ejected again if it
// still fails. Default: DefaultProbation.
func WithProbation(d time.Duration) ClientOption {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.probation = d })
}

// endpoint is one instance's transport and load statistics.
type endpoint struct {
	transport    connect.Transport
	inFlight     atomic.Int64
	ewma         atomic.Uint64 // float64 bits: latency in ns
	ejectedUntil atomic.Int64  // Unix ns
}

func (e *endpoint) load() float64 {
	lat := math.Float64frombits(e.ewma.Load())
	if lat == 0 {
		lat = 1 // unmeasured: prefer it, so that it gets measured
	}
	return float64(e.inFlight.Load()+1) * lat
}

// observe folds a call's latency into the EWMA (weight 0.2).
func (e *endpoint) observe(d time.Duration) {
	for {
		old := e.ewma.Load()
		lat := math.Float64frombits(old)
		next := float64(d)
		if lat != 0 {
			next = 0.8*lat + 0.2*float64(d)
		}
		if e.ewma.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

func hasBreaker(p *ServicePolicy) bool {
	for i := range p.Methods {
		if p.Methods[i].CircuitBreaker != nil {
			return true
		}
	}
	return false
}

// pickTransport selects an instance for each call (see Balancing), skipping
// instances on probation and those whose breaker for the method is open,
// and tracks the call's load, latency and outcome.
type pickTransport struct {
	conn   *Conn
	policy *ServicePolicy
	next   atomic.Uint64
}

func (t *pickTransport) NewClientStream(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
	instances := t.conn.fixed
	if r := t.conn.resolver; r != nil {
		var err error
		if instances, err = r.Resolve(ctx, t.policy.DiscoveryName); err != nil {
			return nil, connect.NewError(connect.CodeUnavailable, fmt.Sprintf("no instance of %s: %v", t.policy.DiscoveryName, err)).WithCause(err)
		}
	}
	var bp *BreakerPolicy
	if mp := t.policy.Method(spec.Procedure); mp != nil {
		bp = mp.CircuitBreaker
	}
	e, br := t.pick(instances, spec.Procedure, bp)
	if e == nil {
		return nil, connect.NewError(connect.CodeUnavailable,
			fmt.Sprintf("circuit open for %s on all %d instances of %s", spec.Procedure, len(instances), t.policy.DiscoveryName))
	}
	e.inFlight.Add(1)
	start := time.Now()
	stream, err := e.transport.NewClientStream(ctx, spec)
	if err != nil {
		t.finish(ctx, e, br, start, err)
		return nil, err
	}
	return &trackedStream{ClientStream: stream, ctx: ctx, t: t, e: e, br: br, start: start}, nil
}

// pick chooses an endpoint and, when the method has a breaker, the breaker
// that admitted the call. Instances on probation are used only when every
// instance is.
func (t *pickTransport) pick(instances []Instance, procedure string, bp *BreakerPolicy) (*endpoint, *breaker.Breaker) {
	n := len(instances)
	if n == 0 {
		return nil, nil
	}
	now := time.Now().UnixNano()
	zone := t.conn.cfg.zone
	preferZone := false
	if zone != "" {
		for i := range instances {
			if instances[i].Zone == zone && t.conn.endpoint(instances[i].BaseURL).ejectedUntil.Load() <= now {
				preferZone = true
				break
			}
		}
	}
	eligible := func(i int, ignoreProbation bool) *endpoint {
		if preferZone && instances[i].Zone != zone {
			return nil
		}
		e := t.conn.endpoint(instances[i].BaseURL)
		if !ignoreProbation && e.ejectedUntil.Load() > now {
			return nil
		}
		return e
	}
	admit := func(i int, e *endpoint) (*endpoint, *breaker.Breaker, bool) {
		if bp == nil {
			return e, nil, true
		}
		br := t.conn.breaker(instances[i].BaseURL, procedure, bp)
		if br.Allow() != nil {
			return nil, nil, false
		}
		return e, br, true
	}
	// First choice.
	if t.conn.cfg.balancing == BalanceP2C && n > 1 {
		a := rand.IntN(n)
		b := rand.IntN(n - 1)
		if b >= a {
			b++
		}
		ea, eb := eligible(a, false), eligible(b, false)
		if ea != nil && eb != nil && eb.load() < ea.load() {
			a, ea, eb = b, eb, ea
		}
		for _, c := range []struct {
			i int
			e *endpoint
		}{{a, ea}, {b, eb}} {
			if c.e == nil {
				continue
			}
			if e, br, ok := admit(c.i, c.e); ok {
				return e, br
			}
		}
	}
	// Round robin, or a scan after P2C's picks were not eligible.
	start := int(t.next.Add(1) - 1)
	for _, ignoreProbation := range []bool{false, true} {
		for k := 0; k < n; k++ {
			i := (start + k) % n
			if e := eligible(i, ignoreProbation); e != nil {
				if e, br, ok := admit(i, e); ok {
					return e, br
				}
			}
		}
	}
	return nil, nil
}

// finish records the end of a call on its endpoint and breaker.
func (t *pickTransport) finish(ctx context.Context, e *endpoint, br *breaker.Breaker, start time.Time, err error) {
	e.inFlight.Add(-1)
	if transportFailure(ctx, err) {
		e.ejectedUntil.Store(time.Now().Add(t.conn.cfg.probation).UnixNano())
	} else {
		e.observe(time.Since(start))
	}
	if br != nil {
		br.Done(!breakerFailure(err))
	}
}

// trackedStream reports a call's end once: at the first error that is not
// the end of the stream, or at Close.
type trackedStream struct {
	connect.ClientStream
	ctx   context.Context //nolint:containedctx // the call's context, to tell a dropped connection from a cancelled call
	t     *pickTransport
	e     *endpoint
	br    *breaker.Breaker
	start time.Time
	done  bool
}

func (s *trackedStream) end(err error) {
	if s.done {
		return
	}
	s.done = true
	s.t.finish(s.ctx, s.e, s.br, s.start, err)
}

func (s *trackedStream) Send(msg any) error {
	err := s.ClientStream.Send(msg)
	if err != nil && !errors.Is(err, io.EOF) {
		s.end(err)
	}
	return err
}

func (s *trackedStream) Receive(msg any) error {
	err := s.ClientStream.Receive(msg)
	switch {
	case errors.Is(err, io.EOF):
		s.end(nil)
	case err != nil:
		s.end(err)
	}
	return err
}

func (s *trackedStream) Close() error {
	err := s.ClientStream.Close()
	s.end(nil)
	return err
}
