package msg

import (
	"context"
	"fmt"
	"time"
)

// Outbox writes messages into a Store's outbox table in the caller's
// local transaction, and wakes the Relay that publishes them. It is safe
// for concurrent use.
type Outbox[Tx any] struct {
	store Store[Tx]
	now   func() time.Time
	cfg   *config
	wake  chan struct{} // holds a value when the relay should look
}

// NewOutbox returns the outbox of store. Options: WithClock, WithMetrics.
func NewOutbox[Tx any](store Store[Tx], opts ...Option) *Outbox[Tx] {
	cfg := newConfig(opts)
	return &Outbox[Tx]{store: store, now: cfg.now, cfg: cfg, wake: make(chan struct{}, 1)}
}

// Add writes m as an outbox row in tx, the transaction that holds the
// business write m announces, and returns the message's ID. The row
// commits or rolls back with tx: once tx committed, the Relay delivers m
// to the CONCORD_MESSAGES stream at least once, across crashes; if tx
// rolls back, nothing is published. Add wakes the relay, which picks the
// row up as soon as the commit is visible; call Notify after a commit to
// make that immediate.
//
// With a Badger store, Add may run more than once when Update retries a
// conflicting transaction; only the committed attempt's row remains, and
// the ID returned last is its ID.
//
// Add returns ErrInvalid for an invalid topic, key or payload or a nil
// tx, and the store's error.
func (o *Outbox[Tx]) Add(ctx context.Context, tx Tx, m Message) (string, error) {
	if err := m.check(); err != nil {
		return "", err
	}
	r := row{ID: newID(), Topic: m.Topic, Key: m.Key, Payload: m.Payload, Written: o.now().UnixNano()}
	span, tc := o.cfg.startPublish(ctx, m.Topic)
	r.Trace = tc
	err := o.store.addRow(ctx, tx, &r)
	if span != nil {
		span.SetAttributes(attrMessageID.String(r.ID))
		endSpan(span, err)
	}
	if err != nil {
		return "", fmt.Errorf("msg: add to outbox: %w", err)
	}
	o.cfg.report(Event{Kind: EventPublish, Topic: m.Topic, ID: r.ID})
	o.Notify()
	return r.ID, nil
}

// Notify wakes the relay: call it after committing a transaction that
// called Add, so that the relay looks at once rather than on its next
// re-check. It never blocks.
func (o *Outbox[Tx]) Notify() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// OutboxStats describes the rows waiting in an outbox.
type OutboxStats struct {
	// Rows is how many committed rows wait to be published (or to be
	// deleted after their publish).
	Rows int
	// Oldest is when the first waiting row in commit order was written
	// (by the producer's clock); zero when none wait.
	Oldest time.Time
}

// Stats counts the rows waiting in the outbox, for monitoring. With
// Badger it reads every waiting row's key.
func (o *Outbox[Tx]) Stats(ctx context.Context) (OutboxStats, error) {
	n, first, err := o.store.outboxStats(ctx)
	if err != nil {
		return OutboxStats{}, fmt.Errorf("msg: outbox stats: %w", err)
	}
	st := OutboxStats{Rows: n}
	if n > 0 {
		st.Oldest = time.Unix(0, first)
	}
	return st, nil
}
