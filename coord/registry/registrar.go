package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/internal/condkv"
)

// acquireAttempts bounds the read-then-write rounds of one registration
// attempt; each lost round means another writer touched the key meanwhile.
const acquireAttempts = 8

// errHeld reports a key that holds another registrar's live registration.
type errHeld struct {
	seq uint64
	ttl time.Duration
}

func (e *errHeld) Error() string { return "registry: key held by another registrar" }

// Registrar keeps one instance registered: it holds the instance's key
// under a TTL lease, refreshes the lease every TTL/3, and creates the key
// again whenever it finds it gone (expired after a partition or a node
// restart, or deleted by someone else). It is safe for concurrent use.
type Registrar struct {
	nc     *nats.Conn
	st     *store
	key    string
	ttl    time.Duration
	every  time.Duration
	lease  string
	logger *slog.Logger

	ctx    context.Context // ends when heartbeats stop
	cancel context.CancelFunc
	done   chan struct{}
	err    atomic.Pointer[error] // why heartbeats stopped on their own

	mu    sync.Mutex // serializes writes; guards the fields below
	reg   Registration
	data  []byte
	rev   uint64 // sequence of our message; 0 when we hold no key we know of
	gone  bool   // deregistered
	rereg uint64
}

// Register stores inst in node's registry under a TTL lease and keeps it
// there until Deregister or Close. It returns once the registration is
// stored. If another registrar holds a live lease on the same service and
// ID, Register waits up to that lease's TTL plus 2s for it to lapse (a
// crashed predecessor with a fixed ID) and fails with ErrDuplicateID if the
// holder refreshes it meanwhile (a live duplicate).
//
// Errors: ErrInvalidRegistration for bad input, ErrDuplicateID, or the
// node's error (wrapping ctx.Err() when ctx ended first).
func Register(ctx context.Context, node *coord.Node, inst Registration, opts ...Option) (*Registrar, error) {
	if node == nil {
		return nil, errors.New("registry: nil node")
	}
	cfg := regConfig{ttl: DefaultTTL, logger: slog.Default()}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.ttl < time.Second {
		return nil, fmt.Errorf("%w: TTL %v: must be at least 1s", ErrInvalidRegistration, cfg.ttl)
	}
	ttl := (cfg.ttl + time.Second - 1).Truncate(time.Second)
	if err := inst.normalize(); err != nil {
		return nil, err
	}
	data, err := inst.encode()
	if err != nil {
		return nil, err
	}
	lease, err := newID()
	if err != nil {
		return nil, err
	}
	if err := condkv.CheckKey(instanceKey(inst.Service, inst.ID)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRegistration, err)
	}
	st := openStore(node)
	r := &Registrar{
		nc: node.Conn(), st: st, key: instanceKey(inst.Service, inst.ID),
		ttl: ttl, every: ttl / 3, lease: lease,
		logger: cfg.logger.With("service", inst.Service, "instance", inst.ID),
		reg:    inst, data: data, done: make(chan struct{}),
	}
	if err := r.register(ctx); err != nil {
		return nil, fmt.Errorf("registry: register %q/%q: %w", inst.Service, inst.ID, err)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	go r.run()
	return r, nil
}

// register creates the key, waiting boundedly for another holder's lease
// to lapse.
func (r *Registrar) register(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var (
		seen     uint64
		deadline time.Time
	)
	for {
		_, err := r.acquireLocked(ctx)
		var held *errHeld
		if !errors.As(err, &held) {
			return err
		}
		switch {
		case seen == 0:
			seen = held.seq
			ttl := held.ttl
			if ttl <= 0 || ttl > time.Hour {
				ttl = r.ttl
			}
			deadline = time.Now().Add(ttl + 2*time.Second)
		case held.seq != seen, time.Now().After(deadline):
			// The holder refreshed its lease, or it outlived its TTL.
			return ErrDuplicateID
		}
		wait := min(max(held.ttl/3, 200*time.Millisecond), time.Until(deadline))
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (waiting for a previous holder's lease to lapse): %w", ErrDuplicateID, ctx.Err())
		case <-t.C:
		}
	}
}

// acquireLocked makes the key hold our registration: as a refresh when the
// key still holds our own message (an earlier write whose outcome was
// unclear went through), else as a new registration on top of whatever
// marker is there, in which case created is true. It returns *errHeld if
// another registrar's registration is live.
func (r *Registrar) acquireLocked(ctx context.Context) (created bool, err error) {
	for range acquireAttempts {
		var cur current
		if cur, err = r.st.last(ctx, r.key); err != nil {
			return false, err
		}
		if cur.live && cur.lease != r.lease {
			r.rev = 0
			return false, &errHeld{seq: cur.seq, ttl: cur.ttl}
		}
		var seq uint64
		seq, err = r.st.put(ctx, r.key, r.data, r.lease, cur.seq, r.ttl)
		if err == nil {
			r.rev = seq
			return !cur.live, nil
		}
		if ctx.Err() != nil || isClosed(err) || (coord.IsRefused(err) && !coord.IsConflict(err)) {
			return false, err
		}
		// Another write came first, or ours has an unclear outcome: read
		// again, which tells.
	}
	return false, fmt.Errorf("registry: key %q keeps changing: %w", r.key, err)
}

// writeLocked refreshes the lease with the current registration. It
// re-registers when the refresh finds the key changed behind its back.
func (r *Registrar) writeLocked(ctx context.Context) error {
	if r.rev != 0 {
		seq, err := r.st.put(ctx, r.key, r.data, r.lease, r.rev, r.ttl)
		if err == nil {
			r.rev = seq
			return nil
		}
		if !coord.IsConflict(err) {
			return err // unclear or refused: the next attempt tells
		}
	}
	// The key changed: it expired, someone deleted it, or an earlier write
	// of ours with an unclear outcome went through.
	created, err := r.acquireLocked(ctx)
	if err != nil {
		return err
	}
	if created {
		r.rereg++
		r.logger.Info("registry: lease was lost; registered again", "key", r.key)
	}
	return nil
}

// run refreshes the lease until Close, Deregister or the node's close.
func (r *Registrar) run() {
	defer close(r.done)
	t := time.NewTimer(r.every)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		if r.nc.IsClosed() {
			err := fmt.Errorf("registry: heartbeats stopped: %w", coord.ErrClosed)
			r.err.Store(&err)
			r.logger.Warn("registry: node closed; heartbeats stopped", "key", r.key)
			return
		}
		ctx, cancel := context.WithTimeout(r.ctx, r.every)
		r.mu.Lock()
		err := r.writeLocked(ctx)
		r.mu.Unlock()
		cancel()
		next := r.every
		if err != nil && r.ctx.Err() == nil {
			var held *errHeld
			if errors.As(err, &held) {
				r.logger.Warn("registry: instance ID taken by another registrar; retrying", "key", r.key)
			} else {
				r.logger.Warn("registry: heartbeat failed", "key", r.key, "err", err)
				next = max(r.every/4, 50*time.Millisecond)
			}
		}
		t.Reset(next)
	}
}

// SetReady updates the instance's readiness and writes it at once.
// Resolvers show an unready instance to no client. If the write fails the
// new readiness is still kept and written by the next heartbeat.
//
// Errors: ErrClosed after Close or Deregister, or the node's error.
func (r *Registrar) SetReady(ctx context.Context, ready bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return ErrClosed
	}
	if r.reg.Ready == ready {
		return nil
	}
	reg := r.reg
	reg.Ready = ready
	data, err := reg.encode()
	if err != nil {
		return err
	}
	r.reg, r.data = reg, data
	if err := r.writeLocked(ctx); err != nil {
		return fmt.Errorf("registry: set ready %v: %w", ready, err)
	}
	return nil
}

// Deregister stops the heartbeats and deletes the registration, only if
// the key still holds this registrar's message: resolvers drop the
// instance as soon as they see the delete (a watch event, typically
// milliseconds). Call it first on graceful shutdown, before draining
// in-flight requests. A later call is a no-op.
//
// Errors: the node's error; the lease then lapses within the TTL anyway.
func (r *Registrar) Deregister(ctx context.Context) error {
	r.stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gone {
		return nil
	}
	expect := r.rev
	for range acquireAttempts {
		if expect != 0 {
			err := r.st.remove(ctx, r.key, expect)
			if err == nil {
				r.gone = true
				return nil
			}
			if !coord.IsConflict(err) {
				return fmt.Errorf("registry: deregister %q: %w", r.key, err)
			}
		}
		cur, err := r.st.last(ctx, r.key)
		if err != nil {
			return fmt.Errorf("registry: deregister %q: %w", r.key, err)
		}
		if !cur.live || cur.lease != r.lease {
			r.gone = true // nothing of ours is there
			return nil
		}
		expect = cur.seq
	}
	return fmt.Errorf("registry: deregister %q: key keeps changing", r.key)
}

// Close stops the heartbeats without deleting the registration, which
// lapses within the TTL. It is idempotent and returns once the heartbeat
// goroutine has ended.
func (r *Registrar) Close() error {
	r.stop()
	return nil
}

func (r *Registrar) stop() {
	r.cancel()
	<-r.done
}

// Done is closed when the heartbeats stop: after Close or Deregister, or
// when the node closed (Err then says so).
func (r *Registrar) Done() <-chan struct{} { return r.done }

// Err returns why the heartbeats stopped on their own (the node closed),
// or nil.
func (r *Registrar) Err() error {
	if p := r.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Registration returns the registration as currently written.
func (r *Registrar) Registration() Registration {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.reg
	g.Metadata = maps.Clone(g.Metadata)
	return g
}

// Key returns the registration's key in coord.BucketRegistry.
func (r *Registrar) Key() string { return r.key }

// TTL returns the lease's TTL, rounded up to whole seconds.
func (r *Registrar) TTL() time.Duration { return r.ttl }

// Reregistrations counts how often the registrar found its lease lost
// (the key expired or was deleted behind its back) and registered again.
func (r *Registrar) Reregistrations() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rereg
}
