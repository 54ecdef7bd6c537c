package rpc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"connectrpc.com/connect/v2"

	"github.com/concordrpc/concord/internal/keylock"
)

// FencingHeader is the request header that carries fencing tokens, one
// "<resource>=<token>" per value (values joined with commas are accepted
// too), for example "Concord-Fencing-Token: orders/42=1187". In the
// resource name, '%', ',', '=', spaces and bytes outside printable ASCII
// are percent-encoded.
const FencingHeader = "Concord-Fencing-Token"

// maxFencingTokens bounds the tokens one call may carry.
const maxFencingTokens = 16

// FencingGuard decides whether a fencing token is current for a resource:
// it admits a token at least as high as the highest it has seen for the
// resource, and records it, but only a token that was issued for that
// resource (a caller can send any number). admitted is false for a stale
// or unverified token; err reports a failure to decide. coord/lock.Guard
// implements it.
type FencingGuard interface {
	Admit(ctx context.Context, resource string, token uint64) (admitted bool, err error)
}

type (
	fencingOutKey struct{} // tokens to send, on a client context
	fencingInKey  struct{} // tokens admitted, on a server context
)

// WithFencingToken returns a context whose calls, made through a client
// with the fencing interceptor (WithFencing), carry token for resource, in
// addition to the tokens ctx already carries. Use the lock's name as the
// resource and the grant's token.
func WithFencingToken(ctx context.Context, resource string, token uint64) context.Context {
	toks := map[string]uint64{}
	if prev, ok := ctx.Value(fencingOutKey{}).(map[string]uint64); ok {
		maps.Copy(toks, prev)
	}
	toks[resource] = token
	return context.WithValue(ctx, fencingOutKey{}, toks)
}

// FencingToken returns the token admitted for resource on the call whose
// server context is ctx. A handler passes it on to writes that a Guard
// checks atomically (coord/lock.Guard.Update).
func FencingToken(ctx context.Context, resource string) (uint64, bool) {
	toks, _ := ctx.Value(fencingInKey{}).(map[string]uint64)
	tok, ok := toks[resource]
	return tok, ok
}

// NewFencingClientInterceptor returns a client interceptor that sends the
// tokens of WithFencingToken in FencingHeader. Its place in the chain does
// not matter.
func NewFencingClientInterceptor() connect.ClientInterceptor {
	return func(next connect.ClientFunc) connect.ClientFunc {
		return func(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
			toks, _ := ctx.Value(fencingOutKey{}).(map[string]uint64)
			if info, ok := connect.CallInfoForClientContext(ctx); ok && len(toks) > 0 {
				h := info.RequestHeader()
				h.Delete(FencingHeader)
				for _, r := range slices.Sorted(maps.Keys(toks)) {
					h.Add(FencingHeader, escapeResource(r)+"="+strconv.FormatUint(toks[r], 10))
				}
			}
			return next(ctx, spec)
		}
	}
}

// WithFencing adds NewFencingClientInterceptor to a Conn's clients.
func WithFencing() ClientOption {
	return WithClientInterceptors(NewFencingClientInterceptor())
}

// maxFencingResource bounds a resource name in FencingHeader, in bytes
// (coord/lock's MaxNameLen).
const maxFencingResource = 512

// NewFencingInterceptor returns a server interceptor that enforces the
// fencing tokens of calls to fenced methods: those whose policy (lookup)
// has Fencing, declared in the .proto with (concord.v1.method).fencing.
// Every other call, gRPC health and reflection included, passes unchecked
// and its FencingHeader is ignored, so a caller cannot make a guard record
// anything through a method that does not declare fencing.
//
// Each token a fenced call carries must be admitted by guard, or the call
// fails with failed_precondition before the handler runs; a call without
// any token fails the same way when the policy says Required. Calls
// carrying tokens for the same resource run one at a time in this
// interceptor (in resource order, for several), from the check until the
// handler returns, so that a call with an older token cannot be admitted
// before a newer one and then write after it. A handler that calls back
// into the same server with the same resource therefore waits for itself;
// don't. The admitted tokens are available to the handler through
// FencingToken.
//
// A malformed header (more than 16 tokens, a resource over 512 bytes, a
// bad escape or token) gets invalid_argument; a guard that cannot decide,
// unavailable. rpc.Server installs it with WithFencingGuard, after the
// TCC slot and before user interceptors.
func NewFencingInterceptor(lookup PolicyLookup, guard FencingGuard) connect.ServerInterceptor {
	locks := new(keylock.Map) // fenced calls serialized per resource
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			p := lookup(spec.Procedure)
			if p == nil || p.Fencing == nil {
				return next(ctx, spec, stream)
			}
			var values []string
			if info, ok := connect.CallInfoForServerContext(ctx); ok {
				values = info.RequestHeader().Values(FencingHeader)
			}
			toks, err := parseFencing(values)
			if err != nil {
				return connect.NewError(connect.CodeInvalidArgument, err.Error())
			}
			if len(toks) == 0 {
				if p.Fencing.Required {
					return connect.NewError(connect.CodeFailedPrecondition, "fencing token required (header "+FencingHeader+")")
				}
				return next(ctx, spec, stream)
			}
			resources := slices.Sorted(maps.Keys(toks))
			unlock, err := lockResources(ctx, locks, resources)
			if err != nil {
				return err
			}
			defer unlock()
			for _, r := range resources {
				admitted, err := guard.Admit(ctx, r, toks[r])
				if err != nil {
					return connect.NewError(connect.CodeUnavailable, "fencing guard unavailable").WithCause(err)
				}
				if !admitted {
					return connect.Errorf(connect.CodeFailedPrecondition,
						"fencing token %d for %q is stale or was not issued for it", toks[r], r)
				}
			}
			return next(context.WithValue(ctx, fencingInKey{}, toks), spec, stream)
		}
	}
}

// parseFencing parses FencingHeader values.
func parseFencing(values []string) (map[string]uint64, error) {
	var toks map[string]uint64
	for _, v := range values {
		for item := range strings.SplitSeq(v, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			i := strings.LastIndexByte(item, '=')
			if i <= 0 {
				return nil, fmt.Errorf("%s: %q is not <resource>=<token>", FencingHeader, item)
			}
			r, err := url.PathUnescape(item[:i])
			if err != nil || r == "" || len(r) > maxFencingResource {
				return nil, fmt.Errorf("%s: bad resource in %q", FencingHeader, item)
			}
			tok, err := strconv.ParseUint(item[i+1:], 10, 64)
			if err != nil || tok == 0 {
				return nil, fmt.Errorf("%s: bad token in %q", FencingHeader, item)
			}
			if toks == nil {
				toks = map[string]uint64{}
			}
			if prev, ok := toks[r]; ok && prev != tok {
				return nil, fmt.Errorf("%s: two tokens for %q", FencingHeader, r)
			}
			toks[r] = tok
			if len(toks) > maxFencingTokens {
				return nil, fmt.Errorf("%s: more than %d tokens", FencingHeader, maxFencingTokens)
			}
		}
	}
	return toks, nil
}

// escapeResource percent-encodes the bytes of a resource name that the
// header syntax reserves.
func escapeResource(r string) string {
	var b strings.Builder
	for i := 0; i < len(r); i++ {
		c := r[i]
		if c <= ' ' || c >= 0x7f || c == '%' || c == ',' || c == '=' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// lockResources locks resources in order in locks, waiting until ctx
// ends, and returns the function that unlocks them.
func lockResources(ctx context.Context, locks *keylock.Map, resources []string) (func(), error) {
	var unlocks []func()
	unlock := func() {
		for _, u := range unlocks {
			u()
		}
	}
	for _, r := range resources {
		u, err := locks.Lock(ctx, r)
		if err != nil {
			unlock()
			code := connect.CodeCanceled
			if errors.Is(err, context.DeadlineExceeded) {
				code = connect.CodeDeadlineExceeded
			}
			return nil, connect.NewError(code, "gave up waiting for a fenced call on the same resource").WithCause(err)
		}
		unlocks = append(unlocks, u)
	}
	return unlock, nil
}
