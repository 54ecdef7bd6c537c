package registry

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/rpc"
)

// Bounds on a watcher's life.
const (
	// watchLoadTimeout bounds receiving a watcher's initial values.
	watchLoadTimeout = 30 * time.Second
	// minBackoff and the relist interval bound the pause after a failure.
	minBackoff = 50 * time.Millisecond
)

// view is the resolver's picture of one service.
type view struct {
	service string
	pattern string
	snap    atomic.Pointer[snapshot]
	notify  atomic.Pointer[chan struct{}] // closed and replaced on every publish
}

// snapshot is an immutable state of a view.
type snapshot struct {
	instances []rpc.Instance // ready instances sorted by ID; shared, read-only
	loaded    bool           // a watcher delivered its initial values
	err       error          // why the last watcher failed, if it did
}

func newView(service string) *view {
	v := &view{service: service, pattern: servicePattern(service)}
	v.snap.Store(&snapshot{})
	ch := make(chan struct{})
	v.notify.Store(&ch)
	return v
}

// changed returns a channel closed at the next publish.
func (v *view) changed() <-chan struct{} { return *v.notify.Load() }

// publish installs s and wakes every waiter.
func (v *view) publish(s *snapshot) {
	v.snap.Store(s)
	ch := make(chan struct{})
	close(*v.notify.Swap(&ch))
}

// record is one key's last known registration.
type record struct {
	raw []byte
	reg Registration
}

// run keeps v current until the resolver closes: one watcher at a time,
// replaced by a fresh one (a full re-read) every relist interval, and
// after a failure with a bounded exponential backoff.
func (r *Resolver) run(v *view) {
	defer r.wg.Done()
	backoff := minBackoff
	for r.ctx.Err() == nil {
		err := r.watch(v)
		if r.ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = minBackoff
			continue
		}
		closed := r.b.Conn().IsClosed()
		if closed {
			err = fmt.Errorf("registry: watch stopped: %w", coord.ErrClosed)
		}
		r.cfg.logger.Warn("registry: watch failed", "service", v.service, "err", err)
		old := v.snap.Load()
		v.publish(&snapshot{instances: old.instances, loaded: old.loaded, err: err})
		if closed {
			return // the node's connection is gone for good
		}
		t := time.NewTimer(backoff)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, r.cfg.relist)
	}
}

var (
	errWatchLoad  = errors.New("registry: watcher did not deliver its initial values in time")
	errWatchEnded = errors.New("registry: watcher ended")
)

// watch runs one watcher on v's keys: it loads the current registrations,
// publishes them, then applies updates until the relist interval ends
// (nil) or the watcher fails. Until the load completes the previous
// snapshot stays in place.
func (r *Resolver) watch(v *view) error {
	w, err := startWatch(r.ctx, r.b, v.pattern)
	if err != nil {
		return err
	}
	defer w.stop()

	recs := map[string]record{}
	loaded, relistDue := false, false
	load := time.NewTimer(watchLoadTimeout)
	defer load.Stop()
	relist := time.NewTimer(r.cfg.relist)
	defer relist.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return nil
		case <-relist.C:
			if loaded {
				return nil
			}
			relistDue = true // a load slower than the interval completes first
		case <-load.C:
			if !loaded {
				return errWatchLoad
			}
		case <-w.closed:
			return errWatchEnded
		case <-w.wake:
			dirty := false
			for _, e := range w.take() {
				if e.loaded {
					loaded, dirty = true, true
				} else if r.apply(v, recs, e) {
					dirty = true
				}
			}
			if loaded && dirty {
				v.publishIfChanged(recs)
			}
			if loaded && relistDue {
				return nil
			}
		}
	}
}

// apply records event e and reports whether v's content changed.
func (r *Resolver) apply(v *view, recs map[string]record, e event) bool {
	old, had := recs[e.key]
	if e.removed {
		delete(recs, e.key)
		return had
	}
	if had && bytes.Equal(old.raw, e.value) {
		return false // a heartbeat
	}
	service, id, ok := splitKey(e.key)
	if !ok || service != v.service {
		return false
	}
	g, err := decodeRegistration(e.value, service, id)
	if err != nil {
		r.cfg.logger.Warn("registry: skipping bad record", "key", e.key, "err", err)
		delete(recs, e.key)
		return had
	}
	recs[e.key] = record{raw: e.value, reg: g}
	return true
}

// publishIfChanged publishes the ready instances in recs unless the
// current snapshot already holds exactly them, which keeps the slice
// Resolve returns stable across heartbeats and re-reads.
func (v *view) publishIfChanged(recs map[string]record) {
	var insts []rpc.Instance
	for _, rec := range recs {
		if rec.reg.Ready {
			insts = append(insts, rec.reg.instance())
		}
	}
	slices.SortFunc(insts, func(a, b rpc.Instance) int { return cmp.Compare(a.ID, b.ID) })
	old := v.snap.Load()
	if old.loaded && old.err == nil && slices.EqualFunc(old.instances, insts, sameInstance) {
		return
	}
	v.publish(&snapshot{instances: insts, loaded: true})
}

func sameInstance(a, b rpc.Instance) bool {
	return a.ID == b.ID && a.BaseURL == b.BaseURL && a.Zone == b.Zone && maps.Equal(a.Metadata, b.Metadata)
}
