package condkv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers that JetStream and the KV convention give meaning to.
const (
	hdrKVOp   = "KV-Operation"
	hdrMarker = "Nats-Marker-Reason"
	hdrTTL    = "Nats-TTL"
	hdrRollup = "Nats-Rollup"
)

// MarkerTTL is how long a purge marker written by Purge stays. Its expiry
// leaves nothing behind and writes no further marker.
const MarkerTTL = time.Second

// MaxKeyLen bounds a key, in bytes, so that a publish on its subject stays
// well within nats-server's 4 KiB control line (a longer one makes the
// server close the connection).
const MaxKeyLen = 2048

// ErrBadKey is returned for a key that CheckKey refuses.
var ErrBadKey = errors.New("condkv: invalid key")

// CheckKey reports whether key is a valid key: 1 to MaxKeyLen bytes of
// letters, digits and "-/_=.", not starting or ending with '.', with no
// empty token ("..").
func CheckKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, want 1 to %d", ErrBadKey, len(key), MaxKeyLen)
	}
	if key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return fmt.Errorf("%w: %q has an empty token", ErrBadKey, key)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '/' || c == '_' || c == '=' || c == '.':
		default:
			return fmt.Errorf("%w: byte %q at %d", ErrBadKey, c, i)
		}
	}
	return nil
}

// Bucket reads and writes the keys of one KV bucket through its stream.
// It is safe for concurrent use.
type Bucket struct {
	js     jetstream.JetStream
	nc     *nats.Conn
	stream string // KV_<bucket>
	prefix string // $KV.<bucket>.
}

// New returns the Bucket named bucket, reached through js and nc (the
// connection js was made from).
func New(js jetstream.JetStream, nc *nats.Conn, bucket string) *Bucket {
	return &Bucket{js: js, nc: nc, stream: "KV_" + bucket, prefix: "$KV." + bucket + "."}
}

// NewStream returns a Bucket over a plain stream whose subjects are
// prefix + key (prefix ends with "."): the same conditional writes and
// reads on a stream that is not a KV bucket. The stream needs AllowDirect
// for LastAll, AllowRollup for Purge and AllowMsgTTL for TTLs.
func NewStream(js jetstream.JetStream, nc *nats.Conn, stream, prefix string) *Bucket {
	return &Bucket{js: js, nc: nc, stream: stream, prefix: prefix}
}

// Conn returns the bucket's connection.
func (b *Bucket) Conn() *nats.Conn { return b.nc }

// Subject returns the subject of key's messages.
func (b *Bucket) Subject(key string) string { return b.prefix + key }

// Stream returns the name of the bucket's stream.
func (b *Bucket) Stream() string { return b.stream }

// Put writes data with the headers hdr (may be nil) under key, only if the
// key's last message, markers included, has sequence expect (0: the key
// has never had a message, or its history is gone). ttl > 0 gives the
// message a time to live (the bucket needs LimitMarkerTTL). It returns the
// new message's sequence. A conflict is reported as coord.IsConflict
// recognises it; an unclear outcome (a timeout) must be resolved with Last.
func (b *Bucket) Put(ctx context.Context, key string, data []byte, hdr nats.Header, expect uint64, ttl time.Duration) (uint64, error) {
	if err := CheckKey(key); err != nil {
		return 0, err
	}
	m := nats.NewMsg(b.Subject(key))
	m.Data = data
	for k, v := range hdr {
		m.Header[k] = v
	}
	opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(expect)}
	if ttl > 0 {
		opts = append(opts, jetstream.WithMsgTTL(ttl))
	}
	ack, err := b.js.PublishMsg(ctx, m, opts...)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// Purge replaces key's messages with a purge marker that lives MarkerTTL,
// only if the key's last message has sequence expect. It returns the
// marker's sequence.
func (b *Bucket) Purge(ctx context.Context, key string, expect uint64) (uint64, error) {
	return b.PurgeWith(ctx, key, nil, expect)
}

// PurgeWith is Purge with the headers hdr (may be nil) on the marker.
func (b *Bucket) PurgeWith(ctx context.Context, key string, hdr nats.Header, expect uint64) (uint64, error) {
	if err := CheckKey(key); err != nil {
		return 0, err
	}
	m := nats.NewMsg(b.Subject(key))
	for k, v := range hdr {
		m.Header[k] = v
	}
	m.Header.Set(hdrKVOp, "PURGE")
	m.Header.Set(hdrRollup, "sub")
	ack, err := b.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(expect), jetstream.WithMsgTTL(MarkerTTL))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// Entry is a key's last message as Last read it.
type Entry struct {
	// Seq is the sequence of the key's last message, marker or not; 0 if
	// the key has none. It is what Put and Purge expect next.
	Seq uint64
	// Live reports a value: the last message exists and is not a delete,
	// purge or expiry marker.
	Live bool
	// Header, Data and Time are the last message's (for a live entry).
	Header nats.Header
	Data   []byte
	Time   time.Time
	// Expires is when a live message with a TTL expires, by the server's
	// clock; zero without a TTL.
	Expires time.Time
}

// Last reads key's last message, markers included, from the stream
// leader: replicas answer direct gets and may lag, while the leader has
// applied every acknowledged write. It is still a hint; conditional writes
// are the authority.
func (b *Bucket) Last(ctx context.Context, key string) (Entry, error) {
	if err := CheckKey(key); err != nil {
		return Entry{}, err
	}
	req, _ := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{b.Subject(key)})
	_, e, err := b.get(ctx, req)
	return e, err
}

// Next reads, from the stream leader, the first message at or after
// sequence from on a key matching pattern (see CheckPattern), markers
// included, and returns its key; an Entry with Seq 0 if there is none.
func (b *Bucket) Next(ctx context.Context, pattern string, from uint64) (string, Entry, error) {
	if err := CheckPattern(pattern); err != nil {
		return "", Entry{}, err
	}
	req, _ := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NextFor string `json:"next_by_subj"`
	}{from, b.Subject(pattern)})
	return b.get(ctx, req)
}

// get sends a stream message get request to the stream leader and returns
// the message's key and entry (Seq 0 if not found).
func (b *Bucket) get(ctx context.Context, req []byte) (string, Entry, error) {
	resp, err := b.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+b.stream, req)
	if err != nil {
		return "", Entry{}, err
	}
	var r struct {
		Message *struct {
			Subject  string    `json:"subject"`
			Sequence uint64    `json:"seq"`
			Header   []byte    `json:"hdrs"`
			Data     []byte    `json:"data"`
			Time     time.Time `json:"time"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return "", Entry{}, fmt.Errorf("condkv: bad response from the stream leader: %w", err)
	}
	if r.Error != nil {
		if r.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return "", Entry{}, nil
		}
		return "", Entry{}, r.Error
	}
	if r.Message == nil {
		return "", Entry{}, errors.New("condkv: empty response from the stream leader")
	}
	var h nats.Header
	if len(r.Message.Header) > 0 {
		if h, err = nats.DecodeHeadersMsg(r.Message.Header); err != nil {
			return "", Entry{}, fmt.Errorf("condkv: bad message headers: %w", err)
		}
	}
	key := strings.TrimPrefix(r.Message.Subject, b.prefix)
	e := Entry{Seq: r.Message.Sequence}
	if IsMarker(h) {
		return key, e, nil
	}
	e.Live, e.Header, e.Data, e.Time = true, h, r.Message.Data, r.Message.Time
	if ttl, err := time.ParseDuration(h.Get(hdrTTL)); err == nil {
		e.Expires = r.Message.Time.Add(ttl)
	}
	return key, e, nil
}

// MaxListed bounds how many keys LastAll returns: nats-server answers a
// batch read of more last messages with "too many results".
const MaxListed = 1024

// ErrTooMany is returned by LastAll when more than MaxListed keys match.
var ErrTooMany = errors.New("condkv: more keys than one read returns")

// LastAll calls f with the key and last message of every live key matching
// pattern (KV wildcards: "*" for one token, ">" for the rest), in one
// batched direct read of the bucket's stream: no consumer, one request,
// at most MaxListed keys (ErrTooMany beyond). Direct reads may come from a
// lagging replica: the answer is for display, not for decisions.
func (b *Bucket) LastAll(ctx context.Context, pattern string, f func(key string, e Entry)) error {
	req, _ := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
		Batch     int      `json:"batch"`
	}{[]string{b.Subject(pattern)}, MaxListed})
	return b.direct(ctx, req, MaxListed, f)
}

// Range calls f with the key and message of each live message whose key
// matches pattern (see CheckPattern) and whose sequence is at least from, in
// stream order, among the first n such messages (markers count towards n,
// and are skipped). It is one batched direct read of the bucket's stream,
// like LastAll: no consumer, one request; n is at most MaxListed. Unlike
// LastAll it also returns messages that are not their key's last, and
// never fails for the number of keys that match: a bounded window of the
// stream. Direct reads may come from a lagging replica: the answer is for
// display, not for decisions.
func (b *Bucket) Range(ctx context.Context, pattern string, from uint64, n int, f func(key string, e Entry)) error {
	if err := CheckPattern(pattern); err != nil {
		return err
	}
	if n < 1 || n > MaxListed {
		return fmt.Errorf("condkv: range of %d messages, want 1 to %d", n, MaxListed)
	}
	req, _ := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NextFor string `json:"next_by_subj"`
		Batch   int    `json:"batch"`
	}{from, b.Subject(pattern), n})
	return b.direct(ctx, req, n, f)
}

// direct sends a batched direct get and calls f with each live message of
// the answer, which ends with an end-of-batch status after at most max
// messages.
func (b *Bucket) direct(ctx context.Context, req []byte, max int, f func(key string, e Entry)) error {
	inbox := b.nc.NewRespInbox()
	sub, err := b.nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.nc.PublishRequest("$JS.API.DIRECT.GET."+b.stream, inbox, req); err != nil {
		return err
	}
	for n := 0; n <= max; n++ {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return err
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "204": // end of batch
			return nil
		case "404": // no key matches
			return nil
		case "413":
			return fmt.Errorf("%w (%d)", ErrTooMany, MaxListed)
		default:
			return fmt.Errorf("condkv: direct read of %s: %s %s", b.stream, status, m.Header.Get("Description"))
		}
		if IsMarker(m.Header) {
			continue
		}
		subj := m.Header.Get("Nats-Subject")
		if !strings.HasPrefix(subj, b.prefix) {
			continue
		}
		e := Entry{Live: true, Header: m.Header, Data: m.Data}
		e.Seq, _ = strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
		e.Time, _ = time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
		if ttl, err := time.ParseDuration(m.Header.Get(hdrTTL)); err == nil {
			e.Expires = e.Time.Add(ttl)
		}
		f(subj[len(b.prefix):], e)
	}
	return fmt.Errorf("%w (%d)", ErrTooMany, max)
}

// IsMarker reports whether a message's headers are those of a delete,
// purge or expiry marker.
func IsMarker(h nats.Header) bool {
	if h == nil {
		return false
	}
	return h.Get(hdrKVOp) != "" || h.Get(hdrMarker) != ""
}

// CheckPattern reports whether pattern is a valid key pattern: a key
// (see CheckKey) in which whole tokens may be "*" (any one token) or, as
// the last token, ">" (one or more tokens).
func CheckPattern(pattern string) error {
	toks := strings.Split(pattern, ".")
	for i, t := range toks {
		if t == "*" || (t == ">" && i == len(toks)-1) {
			toks[i] = "x"
		}
	}
	return CheckKey(strings.Join(toks, "."))
}

// WatchConfig selects what a Watch delivers.
type WatchConfig struct {
	// LastPerKey starts the watch with the last message of each matching
	// key (markers included); otherwise it delivers only new messages.
	LastPerKey bool
	// HeadersOnly delivers messages without their data.
	HeadersOnly bool
	// More are further patterns to watch with the same consumer (its
	// filter subjects). No two patterns may match a common key.
	More []string
}

// Watch delivers the messages of the keys matching a pattern through an
// ordered consumer, which re-creates itself after a gap or missed
// heartbeats. Watches skip messages that were quickly replaced and resume
// late after a node dies: callers repair what they build with re-reads.
//
// A watch has one consumer on the bucket's stream at a time. Stop deletes
// it on the server; one whose deletion fails (the node is unreachable) is
// removed by the server after inactiveThreshold without a pull.
type Watch struct {
	cc       jetstream.ConsumeContext
	cons     jetstream.Consumer
	js       jetstream.JetStream
	stream   string
	closed   <-chan struct{}
	pending  uint64
	stopOnce sync.Once
	stopped  chan struct{} // closed when the consumer is stopped and deleted
}

// watchStopWait bounds how long Stop waits for the consumer to end. The
// ordered consumer's own Stop can wait out a reset's retry backoff (up to
// 10 s) when the node is unreachable; Stop does not make its caller wait
// that long.
const watchStopWait = 2 * time.Second

// inactiveThreshold is how long the server keeps a watch's consumer that
// nobody pulls from: the bound on a consumer that Stop could not delete.
const inactiveThreshold = 30 * time.Second

// deleteWait bounds the request that deletes a stopped watch's consumer.
const deleteWait = 2 * time.Second

// Watch starts a watch of the keys matching pattern or one of cfg.More
// (see CheckPattern) and calls fn with each message's key and message, in
// one consumer. fn runs on one goroutine,
// in stream order, and must not block; it may still be called for a
// moment after Stop returns.
func (b *Bucket) Watch(ctx context.Context, pattern string, cfg WatchConfig, fn func(key string, m jetstream.Msg)) (*Watch, error) {
	var filters []string
	for _, p := range append([]string{pattern}, cfg.More...) {
		if err := CheckPattern(p); err != nil {
			return nil, err
		}
		filters = append(filters, b.Subject(p))
	}
	deliver := jetstream.DeliverNewPolicy
	if cfg.LastPerKey {
		deliver = jetstream.DeliverLastPerSubjectPolicy
	}
	cons, err := b.js.OrderedConsumer(ctx, b.stream, jetstream.OrderedConsumerConfig{
		FilterSubjects:    filters,
		DeliverPolicy:     deliver,
		HeadersOnly:       cfg.HeadersOnly,
		InactiveThreshold: inactiveThreshold,
	})
	if err != nil {
		return nil, err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if key, ok := strings.CutPrefix(m.Subject(), b.prefix); ok {
			fn(key, m)
		}
	}, jetstream.ConsumeErrHandler(func(jetstream.ConsumeContext, error) {}))
	if err != nil {
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteWait)
			_ = b.js.DeleteConsumer(dctx, b.stream, info.Name)
			cancel()
		}
		return nil, err
	}
	w := &Watch{cc: cc, cons: cons, js: b.js, stream: b.stream, closed: cc.Closed(), stopped: make(chan struct{})}
	if info := cons.CachedInfo(); info != nil {
		w.pending = info.NumPending
	}
	return w, nil
}

// Pending returns how many messages the watch had to deliver when it
// started (with LastPerKey, the number of matching keys that have a last
// message, markers included).
func (w *Watch) Pending() uint64 { return w.pending }

// Closed returns a channel closed when the watch has ended: after Stop,
// or when its connection closed.
func (w *Watch) Closed() <-chan struct{} { return w.closed }

// Stop stops the watch, deletes its consumer on the server, and waits at
// most watchStopWait for both. The ordered consumer's Stop does not delete
// the consumer (the server would keep it for inactiveThreshold), so Stop
// deletes it with a request bounded by deleteWait, after the ordered
// consumer has stopped re-creating itself: the consumer it deletes is the
// last one. What Stop does not wait for finishes within 10 s plus
// deleteWait. Stop is idempotent.
func (w *Watch) Stop() {
	if w == nil {
		return
	}
	w.stopOnce.Do(func() {
		go func() {
			defer close(w.stopped)
			w.cc.Stop()
			<-w.closed
			info := w.cons.CachedInfo()
			if info == nil || w.js.Conn().IsClosed() {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), deleteWait)
			defer cancel()
			_ = w.js.DeleteConsumer(ctx, w.stream, info.Name)
		}()
	})
	t := time.NewTimer(watchStopWait)
	defer t.Stop()
	select {
	case <-w.stopped:
	case <-t.C:
	}
}
