package msg

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/msg/internal/outboxes"
)

// After a wake or a round that published something, the relay looks again
// after chaseFirst, doubling, chaseSteps times: a wake from Add comes
// before the commit, and a commit that others' wakes covered is seen on
// the next look. Then it sleeps until the next wake or sweep.
const (
	chaseFirst = time.Millisecond
	chaseSteps = 8 // 1ms to 128ms, about 255ms in all
)

// maxGroups bounds the subjects a relay publishes to at once.
const maxGroups = 16

// Relay publishes the rows of an outbox to JetStream and deletes each
// once JetStream acknowledged it. One goroutine per Relay reads rows in
// commit order, a batch at a time, and publishes each partition's rows
// (one topic and ordering-key partition: one subject) one after the
// other, waiting for each acknowledgement before the next: a row is
// published only after every earlier row of its partition was stored.
// Partitions, and rows without a key, are published concurrently, up to
// 16 at once. A row that fails holds back the
// later rows of its partition until the next round; the other partitions
// go on.
//
// Each publish carries the row's ID as JetStream's message ID, so a row
// published again after a crash between the acknowledgement and the
// delete (or by two relays sharing a SQL outbox) is dropped by the
// stream's two-minute duplicate window; a later duplicate is dropped by
// the consumers' inboxes.
//
// The relay looks for rows when Add or Notify wakes it (and re-checks for
// about 250 ms, see Outbox.Add), and every sweep interval for rows that
// no wake announced. Close stops it. It is safe for concurrent use.
type Relay struct {
	cfg    *config
	js     jetstream.JetStream
	pass   func(ctx context.Context) (published int, more bool, err error)
	wake   <-chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// StartRelay starts relaying ob to node's CONCORD_MESSAGES stream. Run one
// relay per Outbox; several relays on one SQL database (one per process)
// are allowed and publish each row at least once. While it runs, the
// relay reports its outbox's Stats to status reads on node in this
// process (msgstatus.Read, concord status). Options: WithLogger,
// WithSweepInterval, WithBatch, WithPublishTimeout, WithMetrics.
func StartRelay[Tx any](node *coord.Node, ob *Outbox[Tx], opts ...Option) *Relay {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Relay{cfg: newConfig(opts), js: node.JetStream(), wake: ob.wake, cancel: cancel, done: make(chan struct{})}
	r.pass = func(ctx context.Context) (int, bool, error) { return relayPass(ctx, r, ob.store) }
	remove := outboxes.Register(node, outboxes.Entry{Store: storeKind(ob.store), Stats: func(ctx context.Context) (int, time.Time, error) {
		st, err := ob.Stats(ctx)
		return st.Rows, st.Oldest, err
	}})
	go func() {
		defer close(r.done)
		defer remove()
		r.loop(ctx)
	}()
	return r
}

// storeKind names a store in status reads.
func storeKind[Tx any](s Store[Tx]) string {
	switch s := any(s).(type) {
	case *BadgerStore:
		return "badger"
	case *SQLStore:
		return s.dialect.Name()
	}
	return "unknown"
}

// Done is closed when the relay has stopped.
func (r *Relay) Done() <-chan struct{} { return r.done }

// Close stops the relay and waits for it: a publish in progress is
// abandoned (its row stays and is published again by the next relay). It
// is idempotent and returns nil.
func (r *Relay) Close() error {
	r.cancel()
	<-r.done
	return nil
}

func (r *Relay) loop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	chase, failures := 0, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
			chase = chaseSteps
		case <-timer.C:
		}
		n, more, err := r.pass(ctx)
		if ctx.Err() != nil {
			return
		}
		delay := r.cfg.sweep
		switch {
		case err != nil:
			failures++
			delay = min(r.cfg.sweep, (10*time.Millisecond)<<min(failures, 10))
			r.cfg.logger.Warn("msg: relay: publishing outbox rows failed; retrying", "error", err, "retry_in", delay)
		case more:
			failures = 0
			delay = 0
		default:
			failures = 0
			if n > 0 {
				chase = chaseSteps
			}
			if chase > 0 {
				delay = chaseFirst << (chaseSteps - chase)
				chase--
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(delay)
	}
}

// relayPass publishes one batch of rows and deletes those acknowledged.
// more reports a full batch that all went out: there may be more rows.
func relayPass[Tx any](ctx context.Context, r *Relay, store Store[Tx]) (int, bool, error) {
	rows, err := store.pending(ctx, r.cfg.batch)
	if err != nil || len(rows) == 0 {
		return 0, false, err
	}
	var (
		order  []string
		groups = map[string][]row{}
	)
	for _, rw := range rows {
		// A group is published one row after the other: an ordered
		// partition (one subject), or one row without a key, which has no
		// order to keep.
		g := subject(rw.Topic, rw.Key)
		if rw.Key == "" {
			g = rw.ID
		}
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], rw)
	}
	var (
		mu    sync.Mutex
		acked []row
		errs  []error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, maxGroups)
	)
	for _, s := range order {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for _, rw := range groups[s] {
				start := time.Now()
				err := r.publish(ctx, rw)
				r.cfg.report(Event{Kind: EventRelay, Topic: rw.Topic, ID: rw.ID, Latency: time.Since(start), Err: err})
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return // later rows of this partition wait
				}
				mu.Lock()
				acked = append(acked, rw)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(acked) > 0 {
		// Not cancelled by Close, which would leave published rows to
		// publish again, but bounded.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.publishTimeout)
		defer cancel()
		if err := store.remove(rctx, acked); err != nil {
			// Published but kept: the next round publishes them again,
			// and the duplicate window drops them.
			errs = append(errs, err)
		}
	}
	err = errors.Join(errs...)
	return len(acked), err == nil && len(rows) == r.cfg.batch, err
}

func (r *Relay) publish(ctx context.Context, rw row) error {
	if err := (Message{Topic: rw.Topic, Key: rw.Key, Payload: rw.Payload}).check(); err != nil {
		return err // a corrupt row: it stays, and blocks its partition
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.publishTimeout)
	defer cancel()
	_, err := r.js.PublishMsg(ctx, rw.envelope().newMsg(rw.Payload, rw.ID), jetstream.WithExpectStream(coord.StreamMessages))
	return err
}
