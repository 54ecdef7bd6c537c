package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/concordrpc/concord/coord/internal/condkv"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/internal/wait"
)

// Retry bounds of a Handle that cannot watch: the delay before each new
// attempt doubles from retryBase up to retryCeiling.
const (
	retryBase    = 100 * time.Millisecond
	retryCeiling = 5 * time.Second
	// watchStartWait bounds the creation of a watch.
	watchStartWait = 5 * time.Second
)

// localPrefix prefixes the local-store key of a config's last known value.
const localPrefix = "concord/config/"

// Update is one version of a config as a Handle delivers it.
type Update[T proto.Message] struct {
	// Value is the version's value, shared by every reader: do not modify
	// it. It is the Handle's default when Version is 0.
	Value T
	// Version is the version (a stream sequence; see Entry.Version), 0 for
	// the default.
	Version uint64
	// Writer and Time are the version's writer and write time.
	Writer string
	Time   time.Time
	// Skipped reports that this watcher did not receive one or more
	// versions before this one: it fell more than the watch buffer behind
	// (WithWatchBuffer).
	Skipped bool
}

// Handle is a live, typed view of one config: Get returns the current
// value from memory, Watch delivers each new version in order. It loads
// the last known value from the local store, then follows the cluster's
// bucket, re-establishing its watch when it ends. It is safe for
// concurrent use. See the package doc for its guarantees.
type Handle[T proto.Message] struct {
	name    string
	typ     protoreflect.FullName
	newT    func() T
	backend Backend
	local   Local
	opts    options

	cur     atomic.Pointer[snapshot[T]]
	loaded  chan struct{}
	loadOne sync.Once
	err     error // why the handle cannot run (bad name or default)

	ctx    context.Context //nolint:containedctx // the handle's lifetime, ended by Close
	cancel context.CancelFunc
	done   chan struct{}
	pumps  sync.WaitGroup
	dirty  chan struct{}
	once   sync.Once

	mu       sync.Mutex // orders updates with watcher registration
	watchers map[*watcher[T]]struct{}
}

// snapshot is a Handle's current version and its stored form.
type snapshot[T proto.Message] struct {
	upd Update[T]
	env *envelope // nil for the default
}

// New returns a Handle on the config name of type T, with def as the
// value until one exists, and starts loading it in the background: first
// its last known value from local (may be nil: no persistence), then the
// cluster's, through backend. Get never blocks; Wait waits for the first
// load. Close it when done. A bad name or a nil default does not fail New:
// the Handle serves def and Wait reports the error (ErrInvalid).
// Options: WithLogger, WithWatchBuffer.
func New[T proto.Message](backend Backend, local Local, name string, def T, opts ...Option) *Handle[T] {
	ctx, cancel := context.WithCancel(context.Background())
	h := &Handle[T]{
		name: name, backend: backend, local: local, opts: newOptions(opts),
		loaded: make(chan struct{}), ctx: ctx, cancel: cancel, done: make(chan struct{}),
		dirty: make(chan struct{}, 1), watchers: map[*watcher[T]]struct{}{},
	}
	h.cur.Store(&snapshot[T]{upd: Update[T]{Value: def}})
	switch {
	case any(def) == nil:
		h.err = fmt.Errorf("%w: %s: nil default", ErrInvalid, name)
	case backend == nil:
		h.err = fmt.Errorf("%w: %s: nil backend", ErrInvalid, name)
	default:
		h.err = CheckName(name)
	}
	if h.err != nil {
		close(h.done)
		return h
	}
	mt := def.ProtoReflect().Type()
	h.typ = mt.Descriptor().FullName()
	h.newT = func() T { return mt.New().Interface().(T) }
	go h.run()
	return h
}

// Name returns the config's name.
func (h *Handle[T]) Name() string { return h.name }

// Get returns the current value: the last version the Handle saw, or the
// default. It reads memory only. The value is shared: do not modify it.
func (h *Handle[T]) Get() T { return h.cur.Load().upd.Value }

// Version returns the current value's version, 0 for the default.
func (h *Handle[T]) Version() uint64 { return h.cur.Load().upd.Version }

// Current returns the current value with its version, writer and time.
func (h *Handle[T]) Current() Update[T] { return h.cur.Load().upd }

// Wait waits until the Handle has loaded once: from the local copy, or
// from the cluster (which may say there is no version yet). It returns
// nil then, ErrInvalid for a Handle that cannot run, ErrClosed after
// Close, or ctx's error.
func (h *Handle[T]) Wait(ctx context.Context) error {
	if h.err != nil {
		return h.err
	}
	select {
	case <-h.loaded:
		return nil
	case <-h.ctx.Done():
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done returns a channel closed when the Handle's background work ended
// (after Close).
func (h *Handle[T]) Done() <-chan struct{} { return h.done }

// Close stops following the config, persists the last value seen, ends
// every watch (their channels close) and waits for its goroutines. It is
// idempotent and returns nil.
func (h *Handle[T]) Close() error {
	h.once.Do(func() {
		h.mu.Lock() // no Watch registers a pump after this
		h.cancel()
		h.mu.Unlock()
		<-h.done
		h.pumps.Wait()
	})
	return nil
}

func (h *Handle[T]) markLoaded() { h.loadOne.Do(func() { close(h.loaded) }) }

// run loads the local copy, then watches the cluster until Close.
func (h *Handle[T]) run() {
	defer close(h.done)
	store := h.openLocal()
	if store != nil {
		h.loadLocal(store)
	}
	defer h.persist(store) // the last value seen, at Close
	for attempt := 0; ; attempt++ {
		w, err := h.startWatch()
		if err != nil {
			if h.ctx.Err() != nil {
				return
			}
			h.opts.logger.Debug("config: cannot watch; retrying", slog.String("name", h.name), slog.Any("error", err))
			if !wait.Sleep(h.ctx, wait.Backoff(attempt, retryBase, retryCeiling)) {
				return
			}
			continue
		}
		attempt = 0
		for ended := false; !ended; {
			select {
			case <-h.ctx.Done():
				w.Stop()
				return
			case <-w.Closed():
				ended = true
			case <-h.dirty:
				h.persist(store)
			}
		}
		w.Stop()
		h.persist(store)
		if !wait.Sleep(h.ctx, retryBase) {
			return
		}
	}
}

// openLocal waits for the local store; nil if there is none.
func (h *Handle[T]) openLocal() *localstore.Store {
	if h.local == nil {
		return nil
	}
	s, err := h.local.Local(h.ctx)
	if err != nil {
		if h.ctx.Err() == nil {
			h.opts.logger.Warn("config: no local store; the last value will not survive a restart", slog.String("name", h.name), slog.Any("error", err))
		}
		return nil
	}
	return s
}

// loadLocal loads the last known value from the local store.
func (h *Handle[T]) loadLocal(store *localstore.Store) {
	data, err := store.Get([]byte(localPrefix + h.name))
	if err != nil {
		if !errors.Is(err, localstore.ErrNotFound) {
			h.opts.logger.Warn("config: cannot read the local copy", slog.String("name", h.name), slog.Any("error", err))
		}
		return
	}
	env, err := decodeEnvelope(data)
	if err == nil {
		err = h.apply(env, env.Version, false)
	}
	if err != nil {
		h.opts.logger.Warn("config: ignoring the local copy", slog.String("name", h.name), slog.Any("error", err))
		return
	}
	h.markLoaded()
}

// persist writes the current value to the local store if it is newer
// than the stored one.
func (h *Handle[T]) persist(store *localstore.Store) {
	s := h.cur.Load()
	if store == nil || s.env == nil {
		return
	}
	key := []byte(localPrefix + h.name)
	if data, err := store.Get(key); err == nil {
		if old, err := decodeEnvelope(data); err == nil && old.Version == s.upd.Version {
			return
		}
	}
	env := *s.env
	env.Version = s.upd.Version
	data, err := env.encode()
	if err == nil {
		err = store.Set(key, data)
	}
	if err != nil {
		h.opts.logger.Warn("config: cannot keep the value locally", slog.String("name", h.name), slog.Any("error", err))
	}
}

// startWatch starts a watch of the config on the backend's current node.
// If the Handle already has a version (from an earlier watch or the local
// copy) it catches up first: the watch's messages are held while the kept
// versions newer than that one are applied in order, then the held
// messages are released (each applies only if newer). So versions written
// while the Handle had no watch are delivered too, up to HistoryDepth.
func (h *Handle[T]) startWatch() (*condkv.Watch, error) {
	ctx, cancel := context.WithTimeout(h.ctx, watchStartWait)
	defer cancel()
	node, err := h.backend.Node(ctx)
	if err != nil {
		return nil, err
	}
	before := h.Version()
	var (
		mu    sync.Mutex
		held  []jetstream.Msg
		live  = before == 0
		first = true
		force = true // the first message may go back: the cluster is the authority
	)
	w, err := bucketOf(node).Watch(ctx, h.name, condkv.WatchConfig{LastPerKey: true}, func(_ string, m jetstream.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if !live && len(held) < 4*HistoryDepth {
			held = append(held, m)
			return
		}
		if !live {
			return // catching up takes too long: the next watch starts again
		}
		h.receive(m, first && force)
		first = false
	})
	if err != nil {
		return nil, err
	}
	if w.Pending() == 0 {
		h.markLoaded() // the cluster has no version
	}
	if live {
		return w, nil
	}
	s := &Store{b: bucketOf(node), js: node.JetStream(), logger: h.opts.logger}
	kept, err := s.kept(ctx, h.name)
	mu.Lock()
	defer mu.Unlock()
	if err == nil && len(held) >= 4*HistoryDepth {
		err = errors.New("too many versions meanwhile")
	}
	if err != nil {
		mu.Unlock() // the callback may be waiting for it while Stop waits for the callback
		w.Stop()
		mu.Lock()
		return nil, fmt.Errorf("config: catching up %s: %w", h.name, err)
	}
	for _, e := range kept {
		if e.Version > before {
			force = false // newer versions exist: nothing goes back
			if err := h.apply(&envelope{Type: string(e.Type), Value: e.Value, Writer: e.Writer, Time: e.Time}, e.Version, false); err != nil {
				h.opts.logger.Warn("config: skipping a version", slog.String("name", h.name), slog.Uint64("version", e.Version), slog.Any("error", err))
			}
		}
	}
	for _, m := range held {
		h.receive(m, first && force)
		first = false
	}
	held, live = nil, true
	h.signalDirty()
	return w, nil
}

// receive handles one message of the watch. The watch's first message is
// the config's latest version: it replaces the current value even if its
// version is lower (the cluster's state is the authority; a lower version
// means the cluster was rebuilt). Later ones apply only if newer.
func (h *Handle[T]) receive(m jetstream.Msg, initial bool) {
	defer h.markLoaded()
	md, err := m.Metadata()
	if err != nil || condkv.IsMarker(m.Headers()) {
		return
	}
	env, err := decodeEnvelope(m.Data())
	if err == nil {
		err = h.apply(env, md.Sequence.Stream, initial)
	}
	if err != nil {
		h.opts.logger.Warn("config: skipping a version", slog.String("name", h.name), slog.Uint64("version", md.Sequence.Stream), slog.Any("error", err))
		return
	}
	h.signalDirty()
}

// signalDirty tells run to persist the current value.
func (h *Handle[T]) signalDirty() {
	select {
	case h.dirty <- struct{}{}:
	default:
	}
}

// apply makes env the current value if it is of the Handle's type and
// newer (or any other version, with force), and queues it for watchers.
func (h *Handle[T]) apply(env *envelope, version uint64, force bool) error {
	if protoreflect.FullName(env.Type) != h.typ {
		return fmt.Errorf("%w: holds a %s, the handle reads %s", ErrInvalid, env.Type, h.typ)
	}
	v := h.newT()
	if err := proto.Unmarshal(env.Value, v); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := h.cur.Load().upd.Version
	if version == cur || (!force && version < cur) {
		return nil
	}
	u := Update[T]{Value: v, Version: version, Writer: env.Writer, Time: env.Time}
	h.cur.Store(&snapshot[T]{upd: u, env: env})
	for w := range h.watchers {
		w.push(u)
	}
	return nil
}

// Watch returns a channel that delivers the current value (the default,
// with Version 0, if there is none yet) and then every later version the
// Handle sees, in version order, until ctx ends or the Handle is closed;
// then the channel is closed. Each watcher has its own buffer
// (WithWatchBuffer): one that falls further behind loses its oldest
// undelivered versions and its next Update has Skipped set; it never
// blocks the Handle or other watchers. Versions written while the Handle
// had no watch on the cluster (an outage, a replaced node) are delivered
// when it catches up, as far as the bucket kept them (HistoryDepth).
func (h *Handle[T]) Watch(ctx context.Context) <-chan Update[T] {
	out := make(chan Update[T])
	w := &watcher[T]{wake: make(chan struct{}, 1), max: h.opts.buffer}
	h.mu.Lock()
	w.push(h.cur.Load().upd)
	select {
	case <-h.ctx.Done():
		h.mu.Unlock()
		close(out)
		return out
	default:
	}
	h.watchers[w] = struct{}{}
	h.pumps.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.pumps.Done()
		defer close(out)
		defer func() {
			h.mu.Lock()
			delete(h.watchers, w)
			h.mu.Unlock()
		}()
		for {
			u, ok := w.pop()
			if !ok {
				select {
				case <-w.wake:
					continue
				case <-ctx.Done():
					return
				case <-h.ctx.Done():
					return
				}
			}
			select {
			case out <- u:
			case <-ctx.Done():
				return
			case <-h.ctx.Done():
				return
			}
		}
	}()
	return out
}

// watcher is one Watch's buffer of undelivered versions.
type watcher[T proto.Message] struct {
	wake chan struct{}
	max  int
	mu   sync.Mutex
	q    []Update[T]
}

func (w *watcher[T]) push(u Update[T]) {
	w.mu.Lock()
	if len(w.q) >= w.max {
		w.q = w.q[len(w.q)-w.max+1:] // keep the newest max-1
		if len(w.q) > 0 {
			w.q[0].Skipped = true
		} else {
			u.Skipped = true
		}
	}
	w.q = append(w.q, u)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher[T]) pop() (Update[T], bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.q) == 0 {
		var zero Update[T]
		return zero, false
	}
	u := w.q[0]
	w.q = w.q[1:]
	return u, true
}
