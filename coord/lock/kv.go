package lock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers on the messages this package writes. A grant's message and its
// refreshes carry the grant's attempt ID, which no other writer uses, so a
// reader can tell whose a key's current message is; refreshes also carry
// the grant's token, which is the sequence of the grant's own message.
const (
	hdrAttempt = "Concord-Lease"
	hdrToken   = "Concord-Token"
	hdrKVOp    = "KV-Operation"
	hdrMarker  = "Nats-Marker-Reason"
	hdrTTL     = "Nats-TTL"
	hdrRollup  = "Nats-Rollup"
	kvOpPurge  = "PURGE"
)

// markerTTL is how long a release marker stays before it vanishes. It is a
// subject delete marker (KV-Operation PURGE), so its expiry leaves nothing
// behind and writes no further marker.
const markerTTL = time.Second

// kvStore writes and reads the keys of one KV bucket through its stream,
// with conditional publishes (one round trip each) rather than the KV API.
type kvStore struct {
	js     jetstream.JetStream
	nc     *nats.Conn
	stream string // KV_<bucket>
	prefix string // $KV.<bucket>.
}

func newKVStore(js jetstream.JetStream, nc *nats.Conn, bucket string) *kvStore {
	return &kvStore{js: js, nc: nc, stream: "KV_" + bucket, prefix: "$KV." + bucket + "."}
}

func (s *kvStore) subject(key string) string { return s.prefix + key }

// put writes data under key with the lease headers and ttl, only if the
// key's last message has sequence expect (0: the key has no message).
func (s *kvStore) put(ctx context.Context, key string, data []byte, attempt string, token, expect uint64, ttl time.Duration) (*jetstream.PubAck, error) {
	m := nats.NewMsg(s.subject(key))
	m.Data = data
	m.Header.Set(hdrAttempt, attempt)
	if token != 0 {
		m.Header.Set(hdrToken, strconv.FormatUint(token, 10))
	}
	return s.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(expect), jetstream.WithMsgTTL(ttl))
}

// release writes a short-lived purge marker on key, only if the key's last
// message has sequence expect. It frees the key.
func (s *kvStore) release(ctx context.Context, key string, expect uint64) (*jetstream.PubAck, error) {
	m := nats.NewMsg(s.subject(key))
	m.Header.Set(hdrKVOp, kvOpPurge)
	m.Header.Set(hdrRollup, "sub")
	return s.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(expect), jetstream.WithMsgTTL(markerTTL))
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

// last reads key's last message from the stream leader. Replicas answer
// direct gets and may lag; the leader has applied every acknowledged write.
// It is still only a hint: conditional writes are the authority.
func (s *kvStore) last(ctx context.Context, key string) (entry, error) {
	req, _ := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{s.subject(key)})
	resp, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+s.stream, req)
	if err != nil {
		return entry{}, err
	}
	var r struct {
		Message *struct {
			Sequence uint64    `json:"seq"`
			Header   []byte    `json:"hdrs"`
			Data     []byte    `json:"data"`
			Time     time.Time `json:"time"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return entry{}, fmt.Errorf("lock: bad response from the stream leader: %w", err)
	}
	if r.Error != nil {
		if r.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return entry{free: true}, nil
		}
		return entry{}, r.Error
	}
	if r.Message == nil {
		return entry{}, errors.New("lock: empty response from the stream leader")
	}
	var h nats.Header
	if len(r.Message.Header) > 0 {
		if h, err = nats.DecodeHeadersMsg(r.Message.Header); err != nil {
			return entry{}, fmt.Errorf("lock: bad message headers: %w", err)
		}
	}
	e := entry{seq: r.Message.Sequence}
	if isMarker(h) {
		e.free = true
		return e, nil
	}
	e.attempt, e.token, e.value = h.Get(hdrAttempt), r.Message.Sequence, r.Message.Data
	if t, err := strconv.ParseUint(h.Get(hdrToken), 10, 64); err == nil && t > 0 {
		e.token = t
	}
	if ttl, err := time.ParseDuration(h.Get(hdrTTL)); err == nil {
		e.expires = r.Message.Time.Add(ttl)
	}
	return e, nil
}

// isMarker reports whether a message is a delete, purge or expiry marker.
func isMarker(h nats.Header) bool {
	if h == nil {
		return false
	}
	return h.Get(hdrKVOp) != "" || h.Get(hdrMarker) != ""
}

// watch wakes a waiter on changes of a key, through an ordered consumer of
// new messages on the key's subject (headers only). Watchers can miss
// messages that were quickly replaced and resume late after a node dies,
// so they only wake; the waiter re-checks, and also re-checks on a timer.
type watch struct {
	cc     jetstream.ConsumeContext
	wake   chan struct{}
	ignore atomic.Pointer[string] // a holder attempt whose refreshes do not wake
}

// ignoring makes refreshes by the holder with this attempt ID not wake.
func (w *watch) ignoring(attempt string) { w.ignore.Store(&attempt) }

func (s *kvStore) watch(ctx context.Context, key string) (*watch, error) {
	w := &watch{wake: make(chan struct{}, 1)}
	cons, err := s.js.OrderedConsumer(ctx, s.stream, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{s.subject(key)},
		DeliverPolicy:     jetstream.DeliverNewPolicy,
		HeadersOnly:       true,
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		h := m.Headers()
		if a := w.ignore.Load(); a != nil && *a != "" && !isMarker(h) && h.Get(hdrAttempt) == *a {
			return // the holder we wait for refreshed its lease
		}
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}, jetstream.ConsumeErrHandler(func(jetstream.ConsumeContext, error) {}))
	if err != nil {
		return nil, err
	}
	w.cc = cc
	return w, nil
}

// stop stops the watch and waits, boundedly, for its goroutines to end.
func (w *watch) stop() {
	if w == nil {
		return
	}
	w.cc.Stop()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-w.cc.Closed():
	case <-t.C:
	}
}
