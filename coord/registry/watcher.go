package registry

import (
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/internal/condkv"
)

// watchAPIWait bounds the watcher's requests: creating its consumer, and
// deleting it on stop. kv.Watch would wait 5s (nats.go's default) for the
// delete when the node is unreachable, which would make a Resolver's Close
// that slow.
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
// first the last message of each key, then every new one, through an
// ordered push consumer (which re-creates itself after a gap or missed
// heartbeats). Its callback never blocks: events queue until taken.
// Watchers skip revisions that were quickly replaced and resume late after
// a node dies, so views built on them are repaired by periodic re-reads.
type watcher struct {
	sub    *nats.Subscription
	prefix string
	wake   chan struct{} // signalled when events are queued
	closed chan struct{} // closed when the subscription has ended

	mu       sync.Mutex
	queue    []event
	loaded   bool
	pending  uint64 // messages pending when the consumer was created
	received uint64
}

// startWatch starts a watcher on the registry keys matching pattern.
func startWatch(nc *nats.Conn, pattern string) (*watcher, error) {
	js, err := nc.JetStream(nats.MaxWait(watchAPIWait))
	if err != nil {
		return nil, err
	}
	w := &watcher{
		prefix: "$KV." + coord.BucketRegistry + ".",
		wake:   make(chan struct{}, 1),
		closed: make(chan struct{}),
	}
	// Hold mu until pending is known, so the callback cannot decide the
	// initial load is complete too early.
	w.mu.Lock()
	defer w.mu.Unlock()
	sub, err := js.Subscribe(w.prefix+pattern, w.deliver,
		nats.BindStream("KV_"+coord.BucketRegistry), nats.OrderedConsumer(), nats.DeliverLastPerSubject())
	if err != nil {
		return nil, err
	}
	sub.SetClosedHandler(func(string) { close(w.closed) })
	w.sub = sub
	// Without a count, the load completes with the first message that has
	// nothing pending after it (or times out if there is none).
	if pending, err := sub.InitialConsumerPending(); err == nil {
		w.pending = pending
		if pending == 0 {
			w.loadedLocked()
		}
	}
	return w, nil
}

// deliver is the subscription's callback.
func (w *watcher) deliver(m *nats.Msg) {
	meta, err := m.Metadata()
	if err != nil || !strings.HasPrefix(m.Subject, w.prefix) {
		return
	}
	e := event{key: m.Subject[len(w.prefix):], value: m.Data}
	if condkv.IsMarker(m.Header) {
		e.removed = true
	}
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

var errWatchStopTimeout = errors.New("registry: watcher did not stop in time")

// stop ends the subscription (deleting its consumer, bounded by
// watchAPIWait) and waits, boundedly, for its delivery goroutine to end.
func (w *watcher) stop() error {
	_ = w.sub.Unsubscribe()
	t := time.NewTimer(watchAPIWait + time.Second)
	defer t.Stop()
	select {
	case <-w.closed:
		return nil
	case <-t.C:
		return errWatchStopTimeout
	}
}
