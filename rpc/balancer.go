package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
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

// endpoint is one instance's transport, load statistics and breakers.
type endpoint struct {
	transport    connect.Transport
	inFlight     atomic.Int64
	ewma         atomic.Uint64 // float64 bits: latency in ns
	ejectedUntil atomic.Int64  // Unix ns
	refs         int           // answers that name it; guarded by Conn.mu

	mu       sync.Mutex
	breakers map[string]*breaker.Breaker // by procedure
}

// breaker returns the endpoint's breaker for procedure, made from p with
// clock now on first use.
func (e *endpoint) breaker(procedure string, p *BreakerPolicy, now func() time.Time) *breaker.Breaker {
	e.mu.Lock()
	defer e.mu.Unlock()
	b, ok := e.breakers[procedure]
	if !ok {
		b = breaker.New(breaker.Config{
			FailureRatio: p.FailureRatio, MinRequests: p.MinRequests, Window: p.Window,
			OpenFor: p.OpenFor, HalfOpenProbes: p.HalfOpenProbes, Now: now,
		})
		if e.breakers == nil {
			e.breakers = map[string]*breaker.Breaker{}
		}
		e.breakers[procedure] = b
	}
	return b
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

// answer is a resolver's answer and the endpoints of its instances, in the
// same order.
type answer struct {
	instances []Instance
	endpoints []*endpoint
}

// track returns instances, the answer of service's resolver, with their
// endpoints. When the base URLs differ from service's last answer, it makes
// endpoints for instances new to the Conn and drops those that no service's
// last answer names any more; calls in flight to a dropped instance keep its
// endpoint and finish normally.
func (c *Conn) track(service string, instances []Instance) answer {
	c.mu.Lock()
	defer c.mu.Unlock()
	last := c.answers[service]
	if slices.EqualFunc(last.instances, instances, func(a, b Instance) bool { return a.BaseURL == b.BaseURL }) {
		return answer{instances, last.endpoints}
	}
	next := answer{instances, make([]*endpoint, len(instances))}
	for i := range instances {
		e, ok := c.endpoints[instances[i].BaseURL]
		if !ok {
			e = c.newEndpoint(instances[i].BaseURL)
			c.endpoints[instances[i].BaseURL] = e
		}
		e.refs++
		next.endpoints[i] = e
	}
	for i, e := range last.endpoints {
		if e.refs--; e.refs == 0 {
			delete(c.endpoints, last.instances[i].BaseURL)
		}
	}
	c.answers[service] = next
	return next
}

func hasBreaker(p *ServicePolicy) bool {
	for i := range p.Methods {
		if p.Methods[i].CircuitBreaker != nil {
			return true
		}
	}
	return false
}

type instanceKey struct{}

// WithInstance returns a context whose calls through a resolving Conn
// (NewResolvingConn, an App) go to the instance with ID id and no other,
// bypassing balancing and circuit breakers: a call that must reach the
// instance holding some state (a TCC branch's participant with a local
// barrier). While the service's resolver does not list the instance, such
// calls fail at once with unavailable. Conns with a fixed base URL ignore
// it.
func WithInstance(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, instanceKey{}, id)
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
	return t.open(ctx, spec, 0)
}

// open starts a call on an instance it picks; failovers is how many
// earlier attempts of the call were never sent (see trackedStream).
func (t *pickTransport) open(ctx context.Context, spec connect.Spec, failovers int) (*trackedStream, error) {
	ans := t.conn.fixed
	if r := t.conn.resolver; r != nil {
		instances, err := r.Resolve(ctx, t.policy.DiscoveryName)
		if err != nil {
			return nil, connect.NewError(connect.CodeUnavailable, fmt.Sprintf("no instance of %s: %v", t.policy.DiscoveryName, err)).WithCause(err)
		}
		ans = t.conn.track(t.policy.DiscoveryName, instances)
	}
	var bp *BreakerPolicy
	if mp := t.policy.Method(spec.Procedure); mp != nil {
		bp = mp.CircuitBreaker
	}
	var (
		e      *endpoint
		br     *breaker.Breaker
		tk     breaker.Ticket
		pinned bool
	)
	// One clock reading serves the probation checks and the call's start:
	// reading it costs about as much as the rest of the pick.
	start := time.Now()
	if id, ok := ctx.Value(instanceKey{}).(string); ok {
		i := slices.IndexFunc(ans.instances, func(in Instance) bool { return in.ID == id })
		if i < 0 {
			return nil, connect.NewError(connect.CodeUnavailable,
				fmt.Sprintf("instance %q of %s is not registered", id, t.policy.DiscoveryName))
		}
		e, pinned = ans.endpoints[i], true
	} else {
		e, br, tk = t.pick(ans, spec.Procedure, bp, start.UnixNano())
	}
	if e == nil {
		return nil, connect.NewError(connect.CodeUnavailable,
			fmt.Sprintf("circuit open for %s on all %d instances of %s", spec.Procedure, len(ans.instances), t.policy.DiscoveryName))
	}
	e.inFlight.Add(1)
	stream, err := e.transport.NewClientStream(ctx, spec)
	if err != nil {
		t.finish(ctx, e, br, tk, start, err)
		return nil, err
	}
	s := &trackedStream{ClientStream: stream, ctx: ctx, t: t, e: e, br: br, tk: tk, start: start, spec: spec, failovers: failovers,
		canFailover: spec.StreamType == connect.StreamTypeUnary && !pinned && len(ans.instances) > 1 && failovers < maxFailovers}
	s.stop = context.AfterFunc(ctx, func() { s.settle(ctx.Err()) })
	return s, nil
}

// pick chooses an endpoint of ans and, when the method has a breaker, the
// breaker that admitted the call with its ticket. Instances on probation
// (at now, Unix ns) are used only when every instance is.
func (t *pickTransport) pick(ans answer, procedure string, bp *BreakerPolicy, now int64) (*endpoint, *breaker.Breaker, breaker.Ticket) {
	instances := ans.instances
	n := len(instances)
	if n == 0 {
		return nil, nil, breaker.Ticket{}
	}
	zone := t.conn.cfg.zone
	preferZone := false
	if zone != "" {
		for i := range instances {
			if instances[i].Zone == zone && ans.endpoints[i].ejectedUntil.Load() <= now {
				preferZone = true
				break
			}
		}
	}
	eligible := func(i int, ignoreProbation bool) *endpoint {
		if preferZone && instances[i].Zone != zone {
			return nil
		}
		e := ans.endpoints[i]
		if !ignoreProbation && e.ejectedUntil.Load() > now {
			return nil
		}
		return e
	}
	admit := func(e *endpoint) (*breaker.Breaker, breaker.Ticket, bool) {
		if bp == nil {
			return nil, breaker.Ticket{}, true
		}
		br := e.breaker(procedure, bp, t.conn.cfg.now)
		tk, err := br.Allow()
		return br, tk, err == nil
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
			ea, eb = eb, ea
		}
		for _, e := range []*endpoint{ea, eb} {
			if e == nil {
				continue
			}
			if br, tk, ok := admit(e); ok {
				return e, br, tk
			}
		}
	}
	// Round robin, or a scan after P2C's picks were not eligible.
	start := int(t.next.Add(1) - 1)
	for _, ignoreProbation := range []bool{false, true} {
		for k := 0; k < n; k++ {
			i := (start + k) % n
			if e := eligible(i, ignoreProbation); e != nil {
				if br, tk, ok := admit(e); ok {
					return e, br, tk
				}
			}
		}
	}
	return nil, nil, breaker.Ticket{}
}

// finish records the end of a call on its endpoint and breaker. A call
// that its caller gave up on or that ran out of time counts neither way on
// the breaker: deadline_exceeded is the caller's deadline (or the method's
// Timeout) whether the client or, from the propagated timeout, the instance
// reports it, so it says nothing of the instance.
func (t *pickTransport) finish(ctx context.Context, e *endpoint, br *breaker.Breaker, tk breaker.Ticket, start time.Time, err error) {
	e.inFlight.Add(-1)
	if transportFailure(ctx, err) {
		e.ejectedUntil.Store(time.Now().Add(t.conn.cfg.probation).UnixNano())
	} else {
		e.observe(time.Since(start))
	}
	switch {
	case br == nil:
	case ctx.Err() != nil || connect.CodeOf(err) == connect.CodeDeadlineExceeded:
		br.Abandon(tk)
	default:
		br.Done(tk, !breakerFailure(ctx, err))
	}
}

// maxFailovers bounds how many times a unary call that was never sent
// (its connection could not be opened) is sent to another instance.
const maxFailovers = 2

// trackedStream reports a call's end once: at the first error that is not
// the end of the stream, at Close, or when the call's context ends, since a
// caller may abandon a stream by cancelling it without reading it to the
// end or closing it.
//
// A unary call to a service with several instances, not pinned to one
// (WithInstance), fails over: if its connection could not be opened (the
// dial failed: the request never left this process, whatever the
// method's idempotency), the instance goes on probation and the call is
// sent to another one, at most maxFailovers times, within its context.
// This is what lets a call reach a live instance while a killed one is
// still registered.
type trackedStream struct {
	connect.ClientStream
	ctx   context.Context //nolint:containedctx // the call's context, to tell a dropped connection from a cancelled call
	t     *pickTransport
	e     *endpoint
	br    *breaker.Breaker
	tk    breaker.Ticket
	start time.Time
	stop  func() bool // stops the settling at the context's end
	done  atomic.Bool

	spec        connect.Spec
	canFailover bool // a unary call that may be sent to another instance
	failovers   int
	req         any // the request, kept for a failover

	mu     sync.Mutex     // guards next and closed: Close may run during Receive
	next   *trackedStream // the attempt that replaced this one
	closed bool
}

func (s *trackedStream) end(err error) {
	s.stop()
	s.settle(err)
}

func (s *trackedStream) settle(err error) {
	if s.done.CompareAndSwap(false, true) {
		s.t.finish(s.ctx, s.e, s.br, s.tk, s.start, err)
	}
}

// abandon ends an attempt that was never made: it counts neither way on
// the instance's latency or breaker.
func (s *trackedStream) abandon() {
	s.stop()
	if s.done.CompareAndSwap(false, true) {
		s.e.inFlight.Add(-1)
		if s.br != nil {
			s.br.Abandon(s.tk)
		}
	}
	_ = s.ClientStream.Close()
}

// replacement returns the attempt that replaced this one, or nil.
func (s *trackedStream) replacement() *trackedStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

func (s *trackedStream) Send(msg any) error {
	if s.canFailover {
		s.req = msg
	}
	err := s.ClientStream.Send(msg)
	if err != nil && !errors.Is(err, io.EOF) {
		s.end(err)
	}
	return err
}

func (s *trackedStream) CloseSend() error {
	if s.replacement() != nil {
		return nil // the failover sent and closed its request
	}
	err := s.ClientStream.CloseSend()
	if err != nil && !errors.Is(err, io.EOF) {
		s.end(err)
		if s.failover(err) {
			return nil
		}
	}
	return err
}

func (s *trackedStream) Receive(msg any) error {
	if next := s.replacement(); next != nil {
		return next.Receive(msg)
	}
	err := s.ClientStream.Receive(msg)
	switch {
	case errors.Is(err, io.EOF):
		s.end(nil)
	case err != nil:
		s.end(err)
		if s.failover(err) {
			return s.replacement().Receive(msg)
		}
	}
	return err
}

// failover sends the call again to another instance and reports whether
// it did: only when err proves the request unsent, the call may fail over,
// and the stream was not closed meanwhile.
func (s *trackedStream) failover(err error) bool {
	if !s.canFailover || s.req == nil || !neverSent(err) || s.ctx.Err() != nil {
		return false
	}
	next, oerr := s.t.open(s.ctx, s.spec, s.failovers+1)
	if oerr != nil {
		return false
	}
	if next.e == s.e { // no other instance off probation
		next.abandon()
		return false
	}
	if serr := next.Send(s.req); serr == nil || errors.Is(serr, io.EOF) {
		_ = next.ClientStream.CloseSend()
	} // else its Receive reports the failure
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		next.abandon()
		return false
	}
	s.next = next
	return true
}

// neverSent reports whether err says the call's connection could not be
// opened, so that its request cannot have reached the server.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (s *trackedStream) Close() error {
	err := s.ClientStream.Close()
	s.end(nil)
	s.mu.Lock()
	s.closed = true
	next := s.next
	s.mu.Unlock()
	if next != nil {
		return next.Close()
	}
	return err
}
