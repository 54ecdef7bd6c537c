package codegen

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	concordv1 "github.com/concordrpc/concord/proto/concord/v1"
)

// Defaults applied when an option leaves a field unset. They are documented
// field by field in concord/v1/options.proto.
const (
	defaultPer               = time.Second
	defaultRetryAttempts     = 3
	maxRetryAttempts         = 10
	defaultInitialBackoff    = 100 * time.Millisecond
	defaultMaxBackoff        = 2 * time.Second
	defaultBackoffMultiplier = 2.0
	defaultFailureRatio      = 0.5
	defaultMinRequests       = 20
	defaultBreakerWindow     = 10 * time.Second
	defaultOpenFor           = 5 * time.Second
	defaultHalfOpenProbes    = 1
)

// servicePolicy is a service's resolved options.
type servicePolicy struct {
	discoveryName string
	methods       []*methodPolicy
}

// methodPolicy is a method's resolved options, with every default filled in.
type methodPolicy struct {
	method  *protogen.Method
	timeout time.Duration
	retry   *retryPolicy
	limit   *limitPolicy
	breaker *breakerPolicy
	fencing *concordv1.Fencing
	tcc     *tccPolicy
}

type retryPolicy struct {
	attempts     int
	initial, max time.Duration
	multiplier   float64
	codes        []concordv1.Code
}

type limitPolicy struct {
	algorithm string // rpc constant name: TokenBucket, SlidingWindow, LeakyBucket
	rate      uint32
	per       time.Duration
	burst     uint32
	scope     string // rpc constant name: ScopeLocal, ScopeCluster
	key       string // rpc constant name: KeyNone, KeyHeader, KeyPeer, KeySubject
	header    string
}

type breakerPolicy struct {
	ratio   float64
	minReq  uint32
	window  time.Duration
	openFor time.Duration
	probes  uint32
}

type tccPolicy struct {
	confirm, cancel *protogen.Method
}

var (
	discoveryNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	headerNameRE    = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

// methodErrors collects problems with a service's options; each message names
// the file, the service and, where there is one, the method.
type methodErrors struct {
	file    *protogen.File
	service *protogen.Service
	errs    []error
}

func (e *methodErrors) add(m *protogen.Method, format string, args ...any) {
	where := fmt.Sprintf("%s: service %s", e.file.Desc.Path(), e.service.Desc.FullName())
	if m != nil {
		where += ", method " + string(m.Desc.Name())
	}
	e.errs = append(e.errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
}

// resolveService reads and checks the Concord options of a service and its
// methods.
func resolveService(file *protogen.File, service *protogen.Service) (*servicePolicy, error) {
	errs := &methodErrors{file: file, service: service}
	sopts, _ := proto.GetExtension(service.Desc.Options(), concordv1.E_Service).(*concordv1.ServiceOptions)
	sp := &servicePolicy{discoveryName: string(service.Desc.FullName())}
	if name := sopts.GetName(); name != "" {
		if !discoveryNameRE.MatchString(name) {
			errs.add(nil, "(concord.v1.service).name %q: use letters, digits, '.', '-' and '_' only", name)
		}
		sp.discoveryName = name
	}
	byName := make(map[string]*protogen.Method, len(service.Methods))
	for _, m := range service.Methods {
		byName[string(m.Desc.Name())] = m
	}
	for _, m := range service.Methods {
		mopts, _ := proto.GetExtension(m.Desc.Options(), concordv1.E_Method).(*concordv1.MethodOptions)
		merged := mergeOptions(applicableDefaults(m, sopts.GetDefaults()), mopts)
		mp := &methodPolicy{method: m}
		resolveMethod(errs, m, merged, mp)
		tcc, _ := proto.GetExtension(m.Desc.Options(), concordv1.E_Tcc).(*concordv1.TCC)
		if tcc != nil {
			mp.tcc = resolveTCC(errs, m, tcc, byName)
		}
		sp.methods = append(sp.methods, mp)
	}
	if len(errs.errs) > 0 {
		return nil, errors.Join(errs.errs...)
	}
	return sp, nil
}

// applicableDefaults drops the service defaults that cannot apply to m, so
// that a service-wide retry or circuit breaker default covers the methods
// that can take it and leaves the others alone: retry needs an idempotent
// unary method, a circuit breaker a unary method. A method's own option is
// still checked strictly.
func applicableDefaults(m *protogen.Method, d *concordv1.MethodOptions) *concordv1.MethodOptions {
	if d == nil || (d.Retry == nil && d.CircuitBreaker == nil) {
		return d
	}
	d = proto.CloneOf(d)
	if isStreaming(m) || !isIdempotent(m) {
		d.Retry = nil
	}
	if isStreaming(m) {
		d.CircuitBreaker = nil
	}
	return d
}

func isIdempotent(m *protogen.Method) bool {
	switch m.Desc.Options().(*descriptorpb.MethodOptions).GetIdempotencyLevel() {
	case descriptorpb.MethodOptions_NO_SIDE_EFFECTS, descriptorpb.MethodOptions_IDEMPOTENT:
		return true
	}
	return false
}

// mergeOptions lays a method's options over the service defaults: each
// field the method sets replaces the default.
func mergeOptions(defaults, method *concordv1.MethodOptions) *concordv1.MethodOptions {
	out := &concordv1.MethodOptions{}
	for _, src := range []*concordv1.MethodOptions{defaults, method} {
		if src == nil {
			continue
		}
		if src.Timeout != "" {
			out.Timeout = src.Timeout
		}
		if src.Retry != nil {
			out.Retry = src.Retry
		}
		if src.RateLimit != nil {
			out.RateLimit = src.RateLimit
		}
		if src.CircuitBreaker != nil {
			out.CircuitBreaker = src.CircuitBreaker
		}
		if src.Fencing != nil {
			out.Fencing = src.Fencing
		}
	}
	return out
}

func isStreaming(m *protogen.Method) bool {
	return m.Desc.IsStreamingClient() || m.Desc.IsStreamingServer()
}

func resolveMethod(errs *methodErrors, m *protogen.Method, o *concordv1.MethodOptions, mp *methodPolicy) {
	mp.timeout = duration(errs, m, "timeout", o.Timeout, 0)
	if r := o.Retry; r != nil {
		mp.retry = resolveRetry(errs, m, r)
	}
	if rl := o.RateLimit; rl != nil {
		mp.limit = resolveLimit(errs, m, rl)
	}
	if cb := o.CircuitBreaker; cb != nil {
		if isStreaming(m) {
			errs.add(m, "circuit_breaker applies to unary methods only")
		}
		mp.breaker = resolveBreaker(errs, m, cb)
	}
	mp.fencing = o.Fencing
}

func resolveRetry(errs *methodErrors, m *protogen.Method, r *concordv1.RetryPolicy) *retryPolicy {
	if isStreaming(m) {
		errs.add(m, "retry applies to unary methods only")
	}
	if !isIdempotent(m) {
		errs.add(m, "retry needs an idempotent method: set option idempotency_level = IDEMPOTENT or NO_SIDE_EFFECTS")
	}
	rp := &retryPolicy{
		attempts:   int(r.MaxAttempts),
		initial:    duration(errs, m, "retry.initial_backoff", r.InitialBackoff, defaultInitialBackoff),
		max:        duration(errs, m, "retry.max_backoff", r.MaxBackoff, defaultMaxBackoff),
		multiplier: r.BackoffMultiplier,
		codes:      r.RetryableCodes,
	}
	if rp.attempts == 0 {
		rp.attempts = defaultRetryAttempts
	}
	if rp.attempts > maxRetryAttempts {
		errs.add(m, "retry.max_attempts is %d; at most %d", rp.attempts, maxRetryAttempts)
	}
	if rp.multiplier == 0 {
		rp.multiplier = defaultBackoffMultiplier
	}
	if rp.multiplier < 1 || math.IsNaN(rp.multiplier) || math.IsInf(rp.multiplier, 0) {
		errs.add(m, "retry.backoff_multiplier is %v; it must be at least 1", r.BackoffMultiplier)
	}
	if rp.max < rp.initial {
		errs.add(m, "retry.max_backoff (%v) is less than retry.initial_backoff (%v)", rp.max, rp.initial)
	}
	if len(rp.codes) == 0 {
		rp.codes = []concordv1.Code{concordv1.Code_UNAVAILABLE}
	}
	for _, c := range rp.codes {
		if c <= concordv1.Code_CODE_UNSPECIFIED || c > concordv1.Code_UNAUTHENTICATED {
			errs.add(m, "retry.retryable_codes holds %v, which is not a status code", c)
		}
	}
	return rp
}

func resolveLimit(errs *methodErrors, m *protogen.Method, rl *concordv1.RateLimit) *limitPolicy {
	lp := &limitPolicy{scope: "ScopeLocal", key: "KeyNone"}
	var rate uint32
	var per string
	var burst *uint32
	burstName, prefix := "burst", ""
	switch alg := rl.Algorithm.(type) {
	case *concordv1.RateLimit_TokenBucket:
		lp.algorithm, prefix = "TokenBucket", "rate_limit.token_bucket"
		rate, per, burst = alg.TokenBucket.GetRate(), alg.TokenBucket.GetPer(), alg.TokenBucket.Burst
	case *concordv1.RateLimit_SlidingWindow:
		lp.algorithm, prefix = "SlidingWindow", "rate_limit.sliding_window"
		rate, per = alg.SlidingWindow.GetRate(), alg.SlidingWindow.GetPer()
	case *concordv1.RateLimit_LeakyBucket:
		lp.algorithm, prefix = "LeakyBucket", "rate_limit.leaky_bucket"
		rate, per, burst = alg.LeakyBucket.GetRate(), alg.LeakyBucket.GetPer(), alg.LeakyBucket.Queue
		burstName = "queue"
	default:
		errs.add(m, "rate_limit needs an algorithm: token_bucket, sliding_window or leaky_bucket")
		return nil
	}
	if rate < 1 {
		errs.add(m, "%s.rate is %d; it must be at least 1", prefix, rate)
	}
	lp.rate = rate
	lp.per = duration(errs, m, prefix+".per", per, defaultPer)
	if lp.per == 0 && per != "" {
		errs.add(m, "%s.per must be positive", prefix)
	}
	switch {
	case lp.algorithm == "SlidingWindow":
	case burst == nil:
		lp.burst = rate
	case *burst < 1:
		errs.add(m, "%s.%s is %d; it must be at least 1", prefix, burstName, *burst)
	default:
		lp.burst = *burst
	}
	switch rl.Scope {
	case concordv1.RateLimit_SCOPE_UNSPECIFIED, concordv1.RateLimit_LOCAL:
	case concordv1.RateLimit_CLUSTER:
		lp.scope = "ScopeCluster"
	default:
		errs.add(m, "rate_limit.scope %v is unknown", rl.Scope)
	}
	switch key := rl.Key; {
	case key == "":
	case key == "peer":
		lp.key = "KeyPeer"
	case key == "subject":
		lp.key = "KeySubject"
	case strings.HasPrefix(key, "header:"):
		lp.key, lp.header = "KeyHeader", strings.ToLower(strings.TrimPrefix(key, "header:"))
		if !headerNameRE.MatchString(lp.header) {
			errs.add(m, "rate_limit.key %q: %q is not a valid header name", key, lp.header)
		}
	default:
		errs.add(m, "rate_limit.key %q is an unknown key source; use \"\", \"header:<name>\", \"peer\" or \"subject\"", key)
	}
	return lp
}

func resolveBreaker(errs *methodErrors, m *protogen.Method, cb *concordv1.CircuitBreaker) *breakerPolicy {
	bp := &breakerPolicy{
		ratio:   cb.FailureRatio,
		minReq:  cb.MinRequests,
		window:  duration(errs, m, "circuit_breaker.window", cb.Window, defaultBreakerWindow),
		openFor: duration(errs, m, "circuit_breaker.open_for", cb.OpenFor, defaultOpenFor),
		probes:  cb.HalfOpenProbes,
	}
	if bp.window == 0 && cb.Window != "" {
		errs.add(m, "circuit_breaker.window must be positive")
	}
	if bp.openFor == 0 && cb.OpenFor != "" {
		errs.add(m, "circuit_breaker.open_for must be positive")
	}
	if bp.ratio == 0 {
		bp.ratio = defaultFailureRatio
	}
	if !(bp.ratio > 0 && bp.ratio <= 1) {
		errs.add(m, "circuit_breaker.failure_ratio is %v; it must be in (0, 1]", cb.FailureRatio)
	}
	if bp.minReq == 0 {
		bp.minReq = defaultMinRequests
	}
	if bp.probes == 0 {
		bp.probes = defaultHalfOpenProbes
	}
	return bp
}

func resolveTCC(errs *methodErrors, m *protogen.Method, t *concordv1.TCC, byName map[string]*protogen.Method) *tccPolicy {
	if isStreaming(m) {
		errs.add(m, "(concord.v1.tcc) applies to unary methods only")
	}
	tp := &tccPolicy{}
	for _, role := range []struct {
		field string
		name  string
		dst   **protogen.Method
	}{{"confirm", t.Confirm, &tp.confirm}, {"cancel", t.Cancel, &tp.cancel}} {
		if role.name == "" {
			errs.add(m, "(concord.v1.tcc).%s is required", role.field)
			continue
		}
		target, ok := byName[role.name]
		switch {
		case !ok:
			errs.add(m, "(concord.v1.tcc).%s names %q, which is not a method of %s", role.field, role.name, m.Parent.Desc.Name())
		case target == m:
			errs.add(m, "(concord.v1.tcc).%s names the Try method itself", role.field)
		case isStreaming(target):
			errs.add(m, "(concord.v1.tcc).%s method %s is streaming; it must be unary", role.field, role.name)
		case target.Input.Desc.FullName() != m.Input.Desc.FullName():
			errs.add(m, "(concord.v1.tcc).%s method %s takes %s, but Try takes %s; they must take the same request type",
				role.field, role.name, target.Input.Desc.FullName(), m.Input.Desc.FullName())
		default:
			*role.dst = target
		}
	}
	if tp.confirm == nil || tp.cancel == nil {
		return nil
	}
	return tp
}

// duration parses a duration option; empty means def.
func duration(errs *methodErrors, m *protogen.Method, field, s string, def time.Duration) time.Duration {
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		errs.add(m, "%s %q is not a duration (examples: \"250ms\", \"2s\", \"1m\")", field, s)
		return def
	}
	if d < 0 {
		errs.add(m, "%s %q is negative", field, s)
		return def
	}
	return d
}
