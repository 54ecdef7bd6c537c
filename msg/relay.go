package msg

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/coord"
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
// Partitions are published concurrently. A row that fails holds back the
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
// are allowed and publish each row at least once. Options: WithLogger,
// WithSweepInterval, WithBatch, WithPublishTimeout.
func StartRelay[Tx any](node *coord.Node, ob *Outbox[Tx], opts ...Option) *Relay {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Relay{cfg: newConfig(opts), js: node.JetStream(), wake: ob.wake, cancel: cancel, done: make(chan struct{})}
	r.pass = func(ctx context.Context) (int, bool, error) { return relayPass(ctx, r, ob.store) }
	go r.loop(ctx)
	return r
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
	defer close(r.done)
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
		s := subject(rw.Topic, rw.Key)
		if _, ok := groups[s]; !ok {
			order = append(order, s)
		}
		groups[s] = append(groups[s], rw)
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
				if err := r.publish(ctx, rw); err != nil {
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
