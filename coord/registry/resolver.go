package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/internal/condkv"
	"github.com/concordrpc/concord/rpc"
)

// Resolver implements rpc.Resolver on the registry: it keeps a
// watch-driven view of each service it was asked for, so Resolve is a map
// read. It is safe for concurrent use.
type Resolver struct {
	b      *condkv.Bucket
	cfg    resConfig
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	views atomic.Pointer[map[string]*view] // copy on write

	closing   atomic.Bool // set at Close
	mu        sync.Mutex  // serializes writes to views with Close
	closeOnce sync.Once
}

var _ rpc.Resolver = (*Resolver)(nil)

// NewResolver returns a resolver over node's registry (node must not be
// nil). It starts nothing: a service's watcher starts on its first Resolve
// and runs until Close.
func NewResolver(node *coord.Node, opts ...ResolverOption) *Resolver {
	cfg := resConfig{relist: DefaultRelistInterval, logger: slog.Default()}
	for _, o := range opts {
		o.apply(&cfg)
	}
	r := &Resolver{b: condkv.New(node.JetStream(), node.Conn(), coord.BucketRegistry), cfg: cfg}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	empty := map[string]*view{}
	r.views.Store(&empty)
	return r
}

// Resolve implements rpc.Resolver. It returns the service's ready
// instances, sorted by ID, from the local view: no round trip and no
// allocation, and the same slice until the view changes. The caller must
// not modify the slice or the instances' metadata. When the service has no
// ready instance Resolve waits, woken by the watch, until one appears or
// ctx ends, and then returns an error wrapping ErrNoInstances and
// ctx.Err(); with ResolverFailFast it fails as soon as the view is loaded.
// The first Resolve of a service starts its watcher.
//
// Errors: ErrNoInstances, ErrClosed, ErrInvalidRegistration (bad name).
func (r *Resolver) Resolve(ctx context.Context, service string) ([]rpc.Instance, error) {
	v := (*r.views.Load())[service]
	if v == nil {
		var err error
		if v, err = r.start(service); err != nil {
			return nil, err
		}
	}
	if s := v.snap.Load(); len(s.instances) > 0 && !r.closing.Load() {
		return s.instances, nil
	}
	return r.wait(ctx, v)
}

// wait blocks until v has a ready instance, ctx ends or r closes.
func (r *Resolver) wait(ctx context.Context, v *view) ([]rpc.Instance, error) {
	for {
		ch := v.changed()
		s := v.snap.Load()
		switch {
		case r.closing.Load():
			return nil, ErrClosed
		case len(s.instances) > 0:
			return s.instances, nil
		case s.err != nil && errors.Is(s.err, coord.ErrClosed):
			return nil, fmt.Errorf("%w of %q: %w", ErrNoInstances, v.service, s.err)
		case r.cfg.failFast && s.loaded:
			return nil, fmt.Errorf("%w of %q", ErrNoInstances, v.service)
		case r.cfg.failFast && s.err != nil:
			return nil, fmt.Errorf("%w of %q: watch failed: %w", ErrNoInstances, v.service, s.err)
		}
		select {
		case <-ch:
		case <-r.ctx.Done():
			return nil, ErrClosed
		case <-ctx.Done():
			if s := v.snap.Load(); s.err != nil && !s.loaded {
				return nil, fmt.Errorf("%w of %q (watch failed: %v): %w", ErrNoInstances, v.service, s.err, ctx.Err())
			}
			return nil, fmt.Errorf("%w of %q: %w", ErrNoInstances, v.service, ctx.Err())
		}
	}
}

// start returns service's view, starting it if needed.
func (r *Resolver) start(service string) (*view, error) {
	if err := checkName("service", service); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing.Load() {
		return nil, ErrClosed
	}
	views := *r.views.Load()
	if v := views[service]; v != nil {
		return v, nil
	}
	v := newView(service)
	next := maps.Clone(views)
	next[service] = v
	r.views.Store(&next)
	r.wg.Add(1)
	go r.run(v)
	return v, nil
}

// Close stops every watcher and waits for their goroutines. Waiting
// Resolve calls return ErrClosed. It is idempotent.
func (r *Resolver) Close() error {
	r.closeOnce.Do(func() {
		r.closing.Store(true)
		r.mu.Lock() // a start holding mu has added its goroutine to wg
		r.mu.Unlock()
		r.cancel()
		r.wg.Wait()
	})
	return nil
}

// Services lists the services with at least one registration, ready or
// not, read afresh from the bucket (for `concord status`; not for the hot
// path). Errors: the node's error.
func (r *Resolver) Services(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	err := r.readAll(ctx, "*.*", func(e event) {
		if service, _, ok := splitKey(e.key); ok {
			seen[service] = true
		}
	})
	if err != nil {
		return nil, fmt.Errorf("registry: list services: %w", err)
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

// Instances lists service's registrations, ready or not, sorted by ID,
// read afresh from the bucket (for `concord status`; not for the hot
// path). Records that do not parse are skipped. Errors: the node's error,
// ErrInvalidRegistration for a bad name.
func (r *Resolver) Instances(ctx context.Context, service string) ([]Registration, error) {
	if err := checkName("service", service); err != nil {
		return nil, err
	}
	byService, err := r.collect(ctx, servicePattern(service))
	if err != nil {
		return nil, fmt.Errorf("registry: list %q: %w", service, err)
	}
	return byService[service], nil
}

// all reads every registration, by service, in one batched read.
func (r *Resolver) all(ctx context.Context) (map[string][]Registration, error) {
	byService, err := r.collect(ctx, "*.*")
	if err != nil {
		return nil, fmt.Errorf("registry: list instances: %w", err)
	}
	return byService, nil
}

// collect reads the registrations whose keys match pattern, by service,
// each sorted by ID. Records that do not parse are skipped.
func (r *Resolver) collect(ctx context.Context, pattern string) (map[string][]Registration, error) {
	out := map[string][]Registration{}
	err := r.readAll(ctx, pattern, func(e event) {
		s, id, ok := splitKey(e.key)
		if !ok {
			return
		}
		if g, err := decodeRegistration(e.value, s, id); err == nil {
			out[s] = append(out[s], g)
		}
	})
	if err != nil {
		return nil, err
	}
	for _, regs := range out {
		slices.SortFunc(regs, func(a, b Registration) int { return cmp.Compare(a.ID, b.ID) })
	}
	return out, nil
}

// readAll calls f for every live key matching pattern, as of now, in one
// batched direct read (condkv.LastAll): no consumer is created.
func (r *Resolver) readAll(ctx context.Context, pattern string, f func(event)) error {
	return r.b.LastAll(ctx, pattern, func(key string, e condkv.Entry) {
		f(event{key: key, value: e.Data})
	})
}
