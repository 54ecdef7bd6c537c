package lock

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/internal/condkv"
)

// Headers on the messages this package writes. A grant's message and its
// refreshes carry the grant's attempt ID, which no other writer uses, so a
// reader can tell whose a key's current message is; refreshes also carry
// the grant's token, which is the sequence of the grant's own message.
// Tickets have headers of their own (ticket.go), and a grant that consumed
// one says so in hdrServed.
const (
	hdrAttempt = "Concord-Lease"
	hdrToken   = "Concord-Token"
)

// kvStore is one bucket of lock or election keys, read and written with
// conditional publishes through condkv (one round trip each).
type kvStore struct {
	b   *condkv.Bucket
	nc  *nats.Conn
	hub *watchHub // the node's shared watches
}

func newKVStore(node *coord.Node, bucket string) *kvStore {
	return &kvStore{b: condkv.New(node.JetStream(), node.Conn(), bucket), nc: node.Conn(), hub: watchHubOf(node)}
}

// put writes data under key with the lease headers and ttl, only if the
// key's last message has sequence expect (0: the key has no message). It
// returns the new message's sequence. served, if not 0, is the order of
// the ticket the grant consumed.
func (s *kvStore) put(ctx context.Context, key string, data []byte, attempt string, served, token, expect uint64, ttl time.Duration) (uint64, error) {
	h := nats.Header{}
	h.Set(hdrAttempt, attempt)
	if token != 0 {
		h.Set(hdrToken, strconv.FormatUint(token, 10))
	}
	if served != 0 {
		h.Set(hdrServed, strconv.FormatUint(served, 10))
	}
	return s.b.Put(ctx, key, data, h, expect, ttl)
}

// release writes a short-lived purge marker on key, only if the key's last
// message has sequence expect. It frees the key. served, if not 0, is the
// order of the ticket the released grant consumed.
func (s *kvStore) release(ctx context.Context, key string, served, expect uint64) (uint64, error) {
	var h nats.Header
	if served != 0 {
		h = nats.Header{hdrServed: []string{strconv.FormatUint(served, 10)}}
	}
	return s.b.PurgeWith(ctx, key, h, expect)
}

// entry is the state of a key as read from the stream.
type entry struct {
	seq     uint64    // sequence of the key's last message; 0 if none
	free    bool      // no message, or a delete or expiry marker
	attempt string    // holder's attempt ID
	token   uint64    // holder's fencing token
	value   []byte    // holder's data
	expires time.Time // when the holder's message expires, by the server's clock
}

// last reads key's last message from the stream leader (condkv.Last): a
// hint, since conditional writes are the authority.
func (s *kvStore) last(ctx context.Context, key string) (entry, error) {
	e, err := s.b.Last(ctx, key)
	if err != nil {
		return entry{}, err
	}
	if !e.Live {
		return entry{seq: e.Seq, free: true}, nil
	}
	en := entry{seq: e.Seq, attempt: e.Header.Get(hdrAttempt), token: e.Seq, value: e.Data, expires: e.Expires}
	if t, err := strconv.ParseUint(e.Header.Get(hdrToken), 10, 64); err == nil && t > 0 {
		en.token = t
	}
	return en, nil
}

// maxTicketScan bounds the reads of waiting.
const maxTicketScan = 4

// waiting reports whether a ticket waits for key, from the stream leader:
// it reads the first message of key's ticket keys (condkv.Next) and, past
// markers (tickets removed within the last second), the next, at most
// maxTicketScan reads. One read when no contender waited in the last
// second; a scan that finds only markers within its bound says waiting.
func (s *kvStore) waiting(ctx context.Context, key string) (bool, error) {
	from := uint64(0)
	for range maxTicketScan {
		_, e, err := s.b.Next(ctx, ticketPattern(key), from)
		switch {
		case err != nil:
			return false, err
		case e.Seq == 0:
			return false, nil
		case e.Live:
			return true, nil
		}
		from = e.Seq + 1
	}
	return true, nil
}

// glance is what a shared watch's view says of a key, for acquireFree.
type glance struct {
	keySeq  uint64 // the key's last message; 0: not seen
	keyFree bool
	waiting bool // some ticket counts
}

// glance returns what the process's shared watch of key knows, if some
// waiter in the process watches it and the watch is live.
func (s *kvStore) glance(key string) (glance, bool) {
	h := s.hub
	h.mu.Lock()
	sw := h.keys[watchKey{stream: s.b.Stream(), key: key}]
	h.mu.Unlock()
	if sw == nil || sw.dead() {
		return glance{}, false
	}
	select {
	case <-sw.ready:
	default:
		return glance{}, false
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	v := sw.view
	return glance{keySeq: v.keySeq, keyFree: v.keyFree, waiting: v.waiting()}, true
}

// hubKey is the key of a node's watchHub (coord.Node.Shared).
type hubKey struct{}

// watchHubOf returns node's hub of shared watches: waiters on one key
// share one consumer however many Sessions (one per Mutex or Election
// without WithSession) they wait under. It holds an entry only while some
// waiter uses it.
func watchHubOf(node *coord.Node) *watchHub {
	return node.Shared(hubKey{}, func() any {
		return &watchHub{keys: map[watchKey]*sharedWatch{}}
	}).(*watchHub)
}

// watchKey names a shared watch: one key of one bucket.
type watchKey struct {
	stream string
	key    string
}

// watchHub is the registry of shared watches, reference-counted: the first
// waiter on a key creates its watch (one ordered consumer on the key and
// its tickets), later waiters subscribe to it, and the last to leave stops
// it, which deletes the consumer (condkv.Watch.Stop).
type watchHub struct {
	mu   sync.Mutex
	keys map[watchKey]*sharedWatch
}

// sharedWatch is one condkv watch, the view of the key it keeps, and the
// waiters it wakes.
type sharedWatch struct {
	hub   *watchHub
	k     watchKey
	ready chan struct{} // closed once cw or err is set
	cw    *condkv.Watch
	err   error
	refs  int        // guarded by watchHub.mu
	mu    sync.Mutex // guards subs and view
	subs  map[*watch]struct{}
	view  *keyView
}

// watch is one waiter's subscription to the shared watch of a key.
// Watchers can miss messages that were quickly replaced and resume late
// after a node dies, so they only wake; the waiter re-checks, and also
// re-checks on a timer.
type watch struct {
	sw      *sharedWatch
	wake    chan struct{}
	keyOnly bool                   // not woken by tickets
	ignore  atomic.Pointer[string] // a holder attempt whose refreshes do not wake
	left    atomic.Bool
}

// ignoring makes refreshes by the holder with this attempt ID not wake.
func (w *watch) ignoring(attempt string) { w.ignore.Store(&attempt) }

// notify wakes w for a message with headers h, on the key itself or (onKey
// false) on one of its tickets, unless w does not want it: a ticket for a
// keyOnly watch, or a refresh by the holder w ignores.
func (w *watch) notify(h nats.Header, onKey bool) {
	if !onKey && w.keyOnly {
		return
	}
	if a := w.ignore.Load(); onKey && a != nil && *a != "" && !condkv.IsMarker(h) && h.Get(hdrAttempt) == *a {
		return // the holder we wait for refreshed its lease
	}
	w.poke()
}

// poke wakes w.
func (w *watch) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// look calls f with w's view of the key, under the view's lock.
func (w *watch) look(f func(v *keyView)) {
	w.sw.mu.Lock()
	defer w.sw.mu.Unlock()
	f(w.sw.view)
}

// watch subscribes to the shared watch of key, creating it if no waiter in
// the process has one. Creation waits for ctx; a watch whose connection
// closed is replaced. A waiter that found the watch being created by
// another, whose ctx ended first, tries again (at most 3 times). A keyOnly
// watch is not woken by the key's tickets.
func (s *kvStore) watch(ctx context.Context, key string, keyOnly bool) (*watch, error) {
	k := watchKey{stream: s.b.Stream(), key: key}
	for i := 0; ; i++ {
		w, err := s.hub.join(ctx, s.b, k, keyOnly)
		if err == nil || ctx.Err() != nil || i == 2 || !isCtxErr(err) {
			return w, err
		}
	}
}

func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// join subscribes a new waiter to the shared watch k, creating it (with b)
// if there is none or it ended. The watch starts with the last message of
// the key and of each of its tickets, then delivers new ones.
func (h *watchHub) join(ctx context.Context, b *condkv.Bucket, k watchKey, keyOnly bool) (*watch, error) {
	w := &watch{wake: make(chan struct{}, 1), keyOnly: keyOnly}
	h.mu.Lock()
	sw := h.keys[k]
	if sw != nil && sw.dead() {
		delete(h.keys, k) // its waiters still hold it; the last stops it
		sw = nil
	}
	create := sw == nil
	if create {
		sw = &sharedWatch{hub: h, k: k, ready: make(chan struct{}), subs: map[*watch]struct{}{}, view: newKeyView(k.key)}
		h.keys[k] = sw
	}
	sw.refs++
	w.sw = sw
	h.mu.Unlock()
	if create {
		cfg := condkv.WatchConfig{LastPerKey: true, HeadersOnly: true, More: []string{ticketPattern(k.key)}}
		sw.cw, sw.err = b.Watch(ctx, k.key, cfg, func(key string, m jetstream.Msg) {
			hdr := m.Headers()
			sw.mu.Lock()
			defer sw.mu.Unlock()
			onKey := key == k.key
			if md, err := m.Metadata(); err == nil { // else it only wakes
				onKey = sw.view.apply(key, hdr, md.Sequence.Stream, md.Timestamp)
			}
			for sub := range sw.subs {
				sub.notify(hdr, onKey)
			}
		})
		close(sw.ready)
	} else {
		select {
		case <-sw.ready:
		case <-ctx.Done():
			h.leave(w)
			return nil, ctx.Err()
		}
	}
	if sw.err != nil {
		err := sw.err
		h.leave(w)
		return nil, err
	}
	sw.mu.Lock()
	sw.subs[w] = struct{}{}
	sw.mu.Unlock()
	return w, nil
}

// released records in the view of k, if a waiter in this process watches
// it, that k is free at seq: the sequence of a release marker whose write
// was acknowledged, by a grant that served the ticket of order served. It wakes the waiters, so that the first in line may
// write its grant expecting the key free at seq, before the watch
// delivers the marker.
func (h *watchHub) released(k watchKey, seq, served uint64) {
	h.mu.Lock()
	sw := h.keys[k]
	h.mu.Unlock()
	if sw == nil {
		return
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.view.released(seq, served)
	for sub := range sw.subs {
		if !sub.keyOnly {
			sub.poke()
		}
	}
}

// dead reports a created watch that has ended (its connection closed).
func (sw *sharedWatch) dead() bool {
	select {
	case <-sw.ready:
	default:
		return false // being created
	}
	if sw.err != nil {
		return true
	}
	select {
	case <-sw.cw.Closed():
		return true
	default:
		return false
	}
}

// leave unsubscribes w, and stops the shared watch if w was its last
// waiter. Stopping waits, at most 2 s, for its consumer to stop and be
// deleted (condkv.Watch.Stop).
func (h *watchHub) leave(w *watch) {
	if !w.left.CompareAndSwap(false, true) {
		return
	}
	sw := w.sw
	sw.mu.Lock()
	delete(sw.subs, w)
	sw.mu.Unlock()
	h.mu.Lock()
	sw.refs--
	last := sw.refs == 0
	if last && h.keys[sw.k] == sw {
		delete(h.keys, sw.k)
	}
	h.mu.Unlock()
	if last && sw.err == nil {
		sw.cw.Stop()
	}
}

// stop leaves the shared watch (see watchHub.leave).
func (w *watch) stop() {
	if w == nil {
		return
	}
	w.sw.hub.leave(w)
}
