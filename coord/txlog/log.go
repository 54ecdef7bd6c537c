package txlog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/internal/condkv"
)

// Subjects of the log, under the stream's concord.txlog.> .
const (
	prefix      = "concord.txlog."
	txToken     = "tx."
	doneToken   = "done."
	hdrState    = "Concord-Tx-State"
	hdrDeadline = "Concord-Tx-Deadline"
)

// DefaultFinishedRetention is how long a finished transaction's summary
// stays readable (List).
const DefaultFinishedRetention = 15 * time.Minute

// ErrNotFound is returned by Get for a transaction that is not in the log:
// never begun, or finished.
var ErrNotFound = errors.New("txlog: transaction not found")

// ErrConflict wraps the error of a conditional write that lost: another
// writer moved the transaction on first. Re-read it with Get.
var ErrConflict = errors.New("txlog: transaction changed by another writer")

// Log reads and writes the transaction log of one node. It is safe for
// concurrent use.
type Log struct {
	b  *condkv.Bucket
	js jetstream.JetStream
}

type sharedKey struct{}

// Open returns node's Log (one per node, shared).
func Open(node *coord.Node) *Log {
	return node.Shared(sharedKey{}, func() any {
		return &Log{b: condkv.NewStream(node.JetStream(), node.Conn(), coord.StreamTxLog, prefix), js: node.JetStream()}
	}).(*Log)
}

// NewID returns a new random transaction ID (32 hex digits).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Begin stores r as a new transaction, only if its ID was never used (or
// is long finished), and sets r.Seq. The Updated and Nonce fields are set
// here.
func (l *Log) Begin(ctx context.Context, r *Record) error {
	return l.write(ctx, r, 0)
}

// Update stores r as the transaction's next record, only if the log's last
// record of it is still the one r was read or written as (r.Seq), and sets
// r.Seq. A lost race is an error wrapping ErrConflict.
func (l *Log) Update(ctx context.Context, r *Record) error {
	if r.Seq == 0 {
		return fmt.Errorf("%w: update of a record that was never stored", ErrInvalid)
	}
	return l.write(ctx, r, r.Seq)
}

func (l *Log) write(ctx context.Context, r *Record, expect uint64) error {
	r.Updated = time.Now()
	r.Nonce = NewID()
	data, err := r.encode()
	if err != nil {
		return err
	}
	h := nats.Header{}
	h.Set(hdrState, string(r.State))
	h.Set(hdrDeadline, strconv.FormatInt(r.Deadline.UnixMilli(), 10))
	seq, err := l.b.Put(ctx, txToken+r.ID, data, h, expect, 0)
	if err == nil {
		r.Seq = seq
		return nil
	}
	if coord.IsConflict(err) {
		return fmt.Errorf("%w: %s: %w", ErrConflict, r.ID, err)
	}
	if coord.IsRefused(err) {
		return fmt.Errorf("txlog: write %s: %w", r.ID, err)
	}
	// The outcome is unclear (a timeout): read it back.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	got, gerr := l.Get(rctx, r.ID)
	switch {
	case gerr == nil && got.Nonce == r.Nonce:
		r.Seq = got.Seq
		return nil
	case gerr == nil && got.Seq != expect:
		return fmt.Errorf("%w: %s (after an unclear write: %v)", ErrConflict, r.ID, err)
	}
	return fmt.Errorf("txlog: write %s, outcome unknown: %w", r.ID, err)
}

// Get reads a transaction's current record from the stream's leader.
func (l *Log) Get(ctx context.Context, id string) (*Record, error) {
	if err := checkID("transaction ID", id); err != nil {
		return nil, err
	}
	e, err := l.b.Last(ctx, txToken+id)
	if err != nil {
		return nil, fmt.Errorf("txlog: read %s: %w", id, err)
	}
	if !e.Live {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	r, err := Decode(e.Data)
	if err != nil {
		return nil, err
	}
	if r.ID != id {
		return nil, fmt.Errorf("%w: record of %q under %q", ErrInvalid, r.ID, id)
	}
	r.Seq = e.Seq
	return r, nil
}

// Finish ends a transaction whose record r is (r.Seq) and whose state is
// an end state: it keeps a summary for retention (0:
// DefaultFinishedRetention; negative: no summary) and purges the
// transaction's subject, only if r is still its last record. A lost race
// wraps ErrConflict.
func (l *Log) Finish(ctx context.Context, r *Record, retention time.Duration) error {
	if !r.State.Finished() {
		return fmt.Errorf("%w: finish in state %s", ErrInvalid, r.State)
	}
	if retention == 0 {
		retention = DefaultFinishedRetention
	}
	if retention > 0 {
		if err := l.summarize(r, retention); err != nil {
			return err
		}
	}
	if _, err := l.b.Purge(ctx, txToken+r.ID, r.Seq); err != nil {
		if coord.IsConflict(err) {
			return fmt.Errorf("%w: %s: %w", ErrConflict, r.ID, err)
		}
		return fmt.Errorf("txlog: finish %s: %w", r.ID, err)
	}
	return nil
}

// summarize publishes r's summary, without waiting: it is for display.
func (l *Log) summarize(r *Record, retention time.Duration) error {
	sum := r.Clone()
	for i := range sum.Branches {
		sum.Branches[i].Request = nil
	}
	sum.Updated = time.Now()
	data, err := sum.encode()
	if err != nil {
		return err
	}
	// The summary is for display: it is published without waiting.
	m := nats.NewMsg(l.b.Subject(doneToken + r.ID))
	m.Data = data
	if _, err := l.js.PublishMsgAsync(m, jetstream.WithMsgTTL(max(retention, time.Second))); err != nil {
		return fmt.Errorf("txlog: summary of %s: %w", r.ID, err)
	}
	return nil
}

// Head is what a Watch reports of a transaction's last record, from its
// headers alone.
type Head struct {
	// ID is the transaction ID.
	ID string
	// Finished reports that the transaction's subject was purged: it
	// ended (the other fields are zero).
	Finished bool
	// State and Deadline are the record's.
	State    State
	Deadline time.Time
	// Written is when the record was stored, by the server's clock.
	Written time.Time
}

// Watch follows the unfinished transactions.
type Watch struct{ w *condkv.Watch }

// Watch calls fn with the head of every unfinished transaction's last
// record, then with each later write, on one goroutine, until Stop. A
// message whose headers are malformed is skipped. Like every watch it can
// skip records quickly replaced and resume late after a node dies: fn's
// user must act on Get's answer, not on the head.
func (l *Log) Watch(ctx context.Context, fn func(Head)) (*Watch, error) {
	w, err := l.b.Watch(ctx, txToken+"*", condkv.WatchConfig{LastPerKey: true, HeadersOnly: true}, func(key string, m jetstream.Msg) {
		id := key[len(txToken):]
		if checkID("transaction ID", id) != nil {
			return
		}
		h := Head{ID: id}
		if md, err := m.Metadata(); err == nil {
			h.Written = md.Timestamp
		}
		hdr := m.Headers()
		if condkv.IsMarker(hdr) {
			h.Finished = true
			fn(h)
			return
		}
		h.State = State(hdr.Get(hdrState))
		ms, err := strconv.ParseInt(hdr.Get(hdrDeadline), 10, 64)
		if !h.State.valid() || err != nil {
			return
		}
		h.Deadline = time.UnixMilli(ms)
		fn(h)
	})
	if err != nil {
		return nil, fmt.Errorf("txlog: watch: %w", err)
	}
	return &Watch{w}, nil
}

// Stop ends the watch (see coord's watch bounds).
func (w *Watch) Stop() { w.w.Stop() }

// Closed is closed when the watch ended: after Stop, or when its
// connection closed.
func (w *Watch) Closed() <-chan struct{} { return w.w.Closed() }

// List returns the unfinished transactions (at most condkv's batch limit
// of 1024, with a truncation error beyond) and the summaries of up to
// maxFinished recently finished ones, newest first, among the stream's
// last 8×maxFinished messages (at most 1024). It costs three requests (two batched direct
// reads and a stream info) and creates no consumer. It reads replicas that
// may lag: it is for display and tests, not for decisions.
func (l *Log) List(ctx context.Context, maxFinished int) (unfinished, finished []*Record, err error) {
	var bad error
	err = l.b.LastAll(ctx, txToken+"*", func(key string, e condkv.Entry) {
		r, derr := Decode(e.Data)
		if derr != nil {
			bad = fmt.Errorf("txlog: %s: %w", key, derr)
			return
		}
		r.Seq = e.Seq
		unfinished = append(unfinished, r)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("txlog: list: %w", err)
	}
	if bad != nil {
		return unfinished, nil, bad
	}
	if maxFinished <= 0 {
		return unfinished, nil, nil
	}
	finished, err = l.recent(ctx, maxFinished)
	return unfinished, finished, err
}

// recentWindow is how many of the stream's last messages per wanted
// summary recent looks through: a transaction writes about five (its
// begin, decision, end, summary and purge marker), and others may be in
// flight meanwhile.
const recentWindow = 8

// recent reads the summaries among the last messages of the stream, newest
// first, at most max of them: one stream info and one batched direct read
// of the summary subjects in a window of recentWindow×max messages (at most
// condkv.MaxListed). It creates no consumer.
func (l *Log) recent(ctx context.Context, max int) ([]*Record, error) {
	s, err := l.js.Stream(ctx, coord.StreamTxLog)
	if err != nil {
		return nil, fmt.Errorf("txlog: list finished: %w", err)
	}
	last := s.CachedInfo().State.LastSeq
	if last == 0 {
		return nil, nil
	}
	window := uint64(min(recentWindow*max, condkv.MaxListed))
	start := uint64(1)
	if last > window {
		start = last - window + 1
	}
	var out []*Record
	err = l.b.Range(ctx, doneToken+"*", start, int(window), func(_ string, e condkv.Entry) {
		if r, err := Decode(e.Data); err == nil {
			out = append(out, r)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("txlog: list finished: %w", err)
	}
	slices.Reverse(out)
	if len(out) > max {
		out = out[:max]
	}
	return out, nil
}
