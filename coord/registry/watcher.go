package registry

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/coord/internal/condkv"
)

// watchAPIWait bounds the creation of a watcher's consumer.
const watchAPIWait = 2 * time.Second

// event is one message on a watched key: a registration, or its removal
// (a delete or purge marker, or an expiry marker of a lapsed lease).
type event struct {
	key     string
	value   []byte
	removed bool
	loaded  bool // not a message: the watcher delivered every initial value
}

// watcher delivers the messages of the registry keys matching a pattern:
// first the last message of each key, then every new one (see
// condkv.Watch). Its callback never blocks: events queue until taken.
type watcher struct {
	cw     *condkv.Watch
	wake   chan struct{}   // signalled when events are queued
	closed <-chan struct{} // closed when the watch has ended

	mu       sync.Mutex
	queue    []event
	loaded   bool
	pending  uint64 // messages pending when the consumer was created
	received uint64
}

// startWatch starts a watcher on the registry keys matching pattern.
func startWatch(ctx context.Context, b *condkv.Bucket, pattern string) (*watcher, error) {
	w := &watcher{wake: make(chan struct{}, 1)}
	// Hold mu until pending is known, so the callback cannot decide the
	// initial load is complete too early.
	w.mu.Lock()
	defer w.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, watchAPIWait)
	defer cancel()
	cw, err := b.Watch(ctx, pattern, condkv.WatchConfig{LastPerKey: true}, w.deliver)
	if err != nil {
		return nil, err
	}
	w.cw, w.closed = cw, cw.Closed()
	w.pending = cw.Pending()
	if w.pending == 0 {
		w.loadedLocked()
	}
	return w, nil
}

// deliver is the watch's callback.
func (w *watcher) deliver(key string, m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		return
	}
	e := event{key: key, value: m.Data(), removed: condkv.IsMarker(m.Headers())}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queue = append(w.queue, e)
	if !w.loaded {
		w.received++
		if w.received >= w.pending || meta.NumPending == 0 {
			w.loadedLocked()
		}
	}
	w.signal()
}

func (w *watcher) loadedLocked() {
	w.loaded = true
	w.queue = append(w.queue, event{loaded: true})
	w.signal()
}

func (w *watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// take returns the queued events and empties the queue.
func (w *watcher) take() []event {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queue
	w.queue = nil
	return q
}

// stop ends the watch, waiting for it boundedly.
func (w *watcher) stop() { w.cw.Stop() }
