package rpc

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/concordrpc/concord/rpc/ratelimit"
)

// subjectKey is the context key of the authenticated subject.
type subjectKey struct{}

// WithSubject returns a context that carries the authenticated subject of a
// call. Authentication interceptors set it; rate limits keyed by "subject"
// read it.
func WithSubject(ctx context.Context, subject string) context.Context {
	return context.WithValue(ctx, subjectKey{}, subject)
}

// SubjectFromContext returns the subject set by WithSubject, or "".
func SubjectFromContext(ctx context.Context) string {
	s, _ := ctx.Value(subjectKey{}).(string)
	return s
}

// AdmissionOption configures NewAdmissionInterceptor.
type AdmissionOption interface{ applyAdmission(*admissionConfig) }

type admissionOptionFunc func(*admissionConfig)

func (f admissionOptionFunc) applyAdmission(c *admissionConfig) { f(c) }

type admissionConfig struct {
	store       LimiterStore
	instances   func(procedure string) int
	maxInFlight int64
	maxKeys     int
	clock       ratelimit.Clock
	logger      *slog.Logger
}

// WithMaxInFlight sheds load: past n calls in flight on the server, new
// calls fail at once with unavailable, which clients may retry elsewhere.
// Default: 0, no bound.
func WithMaxInFlight(n int) AdmissionOption {
	return admissionOptionFunc(func(c *admissionConfig) { c.maxInFlight = int64(n) })
}

// WithLimiterStore shares ScopeCluster limits among instances through
// store (the coordination node's, in a Concord App). Default: none, so
// cluster-scoped limits are counted per instance.
func WithLimiterStore(store LimiterStore) AdmissionOption {
	return admissionOptionFunc(func(c *admissionConfig) { c.store = store })
}

// WithInstanceCount tells cluster-scoped limits how many instances share
// the limit of a procedure, so that each takes its share of a batch (a
// Concord App counts its service's ready instances in the registry).
// Default: 1.
func WithInstanceCount(count func(procedure string) int) AdmissionOption {
	return admissionOptionFunc(func(c *admissionConfig) { c.instances = count })
}

// WithMaxKeys bounds the keys each keyed limit tracks. Default:
// ratelimit.DefaultMaxKeys.
func WithMaxKeys(n int) AdmissionOption {
	return admissionOptionFunc(func(c *admissionConfig) { c.maxKeys = n })
}

// WithLimiterClock sets the limiters' clock, for tests.
func WithLimiterClock(c ratelimit.Clock) AdmissionOption {
	return admissionOptionFunc(func(cfg *admissionConfig) { cfg.clock = c })
}

// WithAdmissionLogger sets the logger for configuration problems. Default:
// slog.Default().
func WithAdmissionLogger(l *slog.Logger) AdmissionOption {
	return admissionOptionFunc(func(c *admissionConfig) { c.logger = l })
}

// NewAdmissionInterceptor returns the interceptor that fills the admission
// slot: it sheds load past WithMaxInFlight and applies each method's
// RateLimit policy. A rejected call fails with resource_exhausted, a
// google.rpc.RetryInfo detail with the retry delay, and a Retry-After
// header (whole seconds, rounded up) that HTTP clients see on the 429.
// Leaky-bucket limits make a call wait for its slot, within its deadline.
// On streams, limits admit stream starts.
//
// Limits with ScopeCluster draw batches of tokens from a LimiterStore shared
// by the instances (WithLimiterStore): decisions stay local, and the
// aggregate stays within rate + burst plus the tokens held in instances'
// pools. They count as token buckets (Burst = Rate for sliding windows,
// Queue for leaky buckets). Without a store, or while it fails, they are
// counted per instance (logged once).
func NewAdmissionInterceptor(lookup PolicyLookup, opts ...AdmissionOption) connect.ServerInterceptor {
	return newAdmission(lookup, opts).interceptor()
}

func newAdmission(lookup PolicyLookup, opts []AdmissionOption) *admission {
	cfg := admissionConfig{logger: slog.Default()}
	for _, o := range opts {
		o.applyAdmission(&cfg)
	}
	if cfg.clock == nil {
		cfg.clock = ratelimit.RealClock() // one clock for the limiters and the status windows
	}
	return &admission{cfg: cfg, lookup: lookup}
}

func (a *admission) interceptor() connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			if a.cfg.maxInFlight > 0 {
				if n := a.inFlight.Add(1); n > a.cfg.maxInFlight {
					a.inFlight.Add(-1)
					a.shed.Add(1)
					return connect.NewError(connect.CodeUnavailable, fmt.Sprintf("server overloaded: %d calls in flight", n-1))
				}
				defer a.inFlight.Add(-1)
			}
			if err := a.admit(ctx, spec); err != nil {
				return err
			}
			return next(ctx, spec, stream)
		}
	}
}

type admission struct {
	cfg      admissionConfig
	lookup   PolicyLookup
	inFlight atomic.Int64
	shed     atomic.Uint64 // calls refused past maxInFlight
	limits   sync.Map      // procedure -> *methodLimit
	warnOnce sync.Once
}

// methodLimit is the limiter state of one method.
type methodLimit struct {
	policy *RateLimitPolicy
	single *ratelimit.Limiter // KeyNone
	keyed  *ratelimit.Keyed
	err    error // invalid policy: logged once, then the method is not limited

	clusterMu sync.Mutex
	cluster   map[string]*clusterLimit // by limit key, for ScopeCluster with a store

	counts   limitCounts   // admitted and refused calls, for LimitStatus
	borrowed atomic.Uint64 // tokens granted by the LimiterStore
}

func (a *admission) admit(ctx context.Context, spec connect.Spec) error {
	p := a.lookup(spec.Procedure)
	if p == nil || p.RateLimit == nil {
		return nil
	}
	ml := a.methodLimit(spec.Procedure, p.RateLimit)
	if ml.err != nil {
		return nil
	}
	key := limitKey(ctx, ml.policy)
	if ml.cluster != nil {
		ok, retry, err := ml.clusterLimit(a, spec.Procedure, key).take(ctx)
		switch {
		case err == nil && ok:
			ml.counts.record(a.cfg.clock.Now(), true)
			return nil
		case err == nil:
			ml.counts.record(a.cfg.clock.Now(), false)
			return rejection(ctx, spec.Procedure, retry)
		case ctx.Err() != nil:
			return ctxError(ctx)
		}
		a.warnOnce.Do(func() {
			a.cfg.logger.Warn("rpc: limiter store failed; counting cluster-scoped limits per instance", slog.Any("error", err))
		})
	}
	l := ml.single
	if l == nil {
		l = ml.keyed.Limiter(key)
	}
	err := l.Wait(ctx)
	if err == nil {
		ml.counts.record(a.cfg.clock.Now(), true)
		return nil
	}
	var limited *ratelimit.LimitedError
	if !errors.As(err, &limited) {
		return ctxError(ctx) // the caller gave up waiting: neither admitted nor refused
	}
	ml.counts.record(a.cfg.clock.Now(), false)
	return rejection(ctx, spec.Procedure, limited.RetryAfter)
}

func (a *admission) methodLimit(procedure string, p *RateLimitPolicy) *methodLimit {
	if v, ok := a.limits.Load(procedure); ok {
		return v.(*methodLimit)
	}
	ml := &methodLimit{policy: p}
	cfg := ratelimit.Config{Algorithm: limiterAlgorithm(p.Algorithm), Rate: p.Rate, Per: p.Per, Burst: p.Burst}
	if p.Key == KeyNone {
		ml.single, ml.err = ratelimit.New(cfg, a.cfg.clock)
	} else {
		ml.keyed, ml.err = ratelimit.NewKeyed(cfg, a.cfg.clock, a.cfg.maxKeys)
	}
	if p.Scope == ScopeCluster && a.cfg.store != nil && ml.err == nil {
		ml.cluster = map[string]*clusterLimit{}
	}
	if v, loaded := a.limits.LoadOrStore(procedure, ml); loaded {
		return v.(*methodLimit)
	}
	switch {
	case ml.err != nil:
		a.cfg.logger.Error("rpc: invalid rate limit; method not limited", slog.String("procedure", procedure), slog.Any("error", ml.err))
	case p.Scope == ScopeCluster && a.cfg.store == nil:
		a.cfg.logger.Warn("rpc: cluster-scoped rate limit counted per instance: no LimiterStore configured", slog.String("procedure", procedure))
	}
	return ml
}

// clusterLimit returns the cluster limit of key, creating it if needed.
// Keys are few per method in practice; past maxClusterKeys the map is
// cleared (their pools are forfeited, which only lowers admissions).
func (ml *methodLimit) clusterLimit(a *admission, procedure, key string) *clusterLimit {
	ml.clusterMu.Lock()
	defer ml.clusterMu.Unlock()
	c, ok := ml.cluster[key]
	if !ok {
		if len(ml.cluster) >= maxClusterKeys {
			clear(ml.cluster)
		}
		p := *ml.policy
		if p.Algorithm != TokenBucket {
			p.Burst = max(p.Burst, 1)
			if p.Algorithm == SlidingWindow {
				p.Burst = p.Rate
			}
		}
		var count func() int
		if a.cfg.instances != nil {
			count = func() int { return a.cfg.instances(procedure) }
		}
		c = newClusterLimit(a.cfg.store, procedure+"|"+key, &p, count)
		c.granted = &ml.borrowed
		ml.cluster[key] = c
	}
	return c
}

func limiterAlgorithm(a Algorithm) ratelimit.Algorithm {
	switch a {
	case TokenBucket:
		return ratelimit.TokenBucket
	case SlidingWindow:
		return ratelimit.SlidingWindow
	case LeakyBucket:
		return ratelimit.LeakyBucket
	}
	return 0 // invalid: rejected by Config.Validate
}

// maxClusterKeys bounds the cluster-limit pools one method keeps.
const maxClusterKeys = 10_000

// limitKey returns the key that selects a call's limiter: a fixed-size
// digest of the value the policy names. That value comes from the caller
// (a header, a peer address, a subject), so it never reaches a limiter
// map, the LimiterStore, a NATS subject or a KV key as it was sent: a
// 1 MiB header costs the same 22 bytes as a short one.
func limitKey(ctx context.Context, p *RateLimitPolicy) string {
	if p.Key == KeyNone {
		return "" // one limiter for the method: nothing to select, nothing to hash
	}
	return digestKey(rawLimitKey(ctx, p))
}

// digestKey returns the first 128 bits of v's SHA-256 in unpadded
// base64url (22 characters). Finding two values that share a limiter takes
// about 2^64 hashes, and would only make them share a budget.
func digestKey(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// rawLimitKey extracts the caller's value that selects a limiter.
func rawLimitKey(ctx context.Context, p *RateLimitPolicy) string {
	info, _ := connect.CallInfoForServerContext(ctx)
	switch p.Key {
	case KeyHeader:
		if info != nil {
			return info.RequestHeader().Get(p.Header)
		}
	case KeyPeer:
		if info != nil {
			if host, _, err := net.SplitHostPort(info.PeerAddr); err == nil {
				return host
			}
			return info.PeerAddr
		}
	case KeySubject:
		return SubjectFromContext(ctx)
	}
	return ""
}

// rejection builds the resource_exhausted error of a rejected call.
func rejection(ctx context.Context, procedure string, retry time.Duration) error {
	if info, ok := connect.CallInfoForServerContext(ctx); ok {
		secs := int64((retry + time.Second - 1) / time.Second)
		info.ResponseHeader().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	}
	err := connect.NewError(connect.CodeResourceExhausted,
		fmt.Sprintf("rate limit of %s exceeded; retry after %v", procedure, retry.Round(time.Millisecond)))
	if detail, derr := connectproto.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)}); derr == nil {
		err = err.WithDetail(detail)
	}
	return err
}
