package lock

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/coord/internal/condkv"
)

// Headers on the messages this package writes. A grant's message and its
// refreshes carry the grant's attempt ID, which no other writer uses, so a
// reader can tell whose a key's current message is; refreshes also carry
// the grant's token, which is the sequence of the grant's own message.
const (
	hdrAttempt = "Concord-Lease"
	hdrToken   = "Concord-Token"
)

// kvStore is one bucket of lock or election keys, read and written with
// conditional publishes through condkv (one round trip each).
type kvStore struct {
	b  *condkv.Bucket
	nc *nats.Conn
}

func newKVStore(js jetstream.JetStream, nc *nats.Conn, bucket string) *kvStore {
	return &kvStore{b: condkv.New(js, nc, bucket), nc: nc}
}

// put writes data under key with the lease headers and ttl, only if the
// key's last message has sequence expect (0: the key has no message). It
// returns the new message's sequence.
func (s *kvStore) put(ctx context.Context, key string, data []byte, attempt string, token, expect uint64, ttl time.Duration) (uint64, error) {
	h := nats.Header{}
	h.Set(hdrAttempt, attempt)
	if token != 0 {
		h.Set(hdrToken, strconv.FormatUint(token, 10))
	}
	return s.b.Put(ctx, key, data, h, expect, ttl)
}

// release writes a short-lived purge marker on key, only if the key's last
// message has sequence expect. It frees the key.
func (s *kvStore) release(ctx context.Context, key string, expect uint64) (uint64, error) {
	return s.b.Purge(ctx, key, expect)
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

// watch wakes a waiter on changes of a key. Watchers can miss messages
// that were quickly replaced and resume late after a node dies, so they
// only wake; the waiter re-checks, and also re-checks on a timer.
type watch struct {
	w      *condkv.Watch
	wake   chan struct{}
	ignore atomic.Pointer[string] // a holder attempt whose refreshes do not wake
}

// ignoring makes refreshes by the holder with this attempt ID not wake.
func (w *watch) ignoring(attempt string) { w.ignore.Store(&attempt) }

func (s *kvStore) watch(ctx context.Context, key string) (*watch, error) {
	w := &watch{wake: make(chan struct{}, 1)}
	cw, err := s.b.Watch(ctx, key, condkv.WatchConfig{HeadersOnly: true}, func(_ string, m jetstream.Msg) {
		h := m.Headers()
		if a := w.ignore.Load(); a != nil && *a != "" && !condkv.IsMarker(h) && h.Get(hdrAttempt) == *a {
			return // the holder we wait for refreshed its lease
		}
		select {
		case w.wake <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, err
	}
	w.w = cw
	return w, nil
}

// stop stops the watch and waits, boundedly, for its goroutines to end.
func (w *watch) stop() {
	if w == nil {
		return
	}
	w.w.Stop()
}
