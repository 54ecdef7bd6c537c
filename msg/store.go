package msg

import (
	"context"
	"time"
)

// Store is a local transactional store that holds a service's outbox and
// inbox rows beside its business data: the instance's Badger store
// (Badger) or the user's SQL database (SQL). Tx is the store's
// transaction type, which Outbox.Add takes and handlers receive. The
// interface is sealed: only this package implements it.
type Store[Tx any] interface {
	// addRow inserts r in tx; r.seq is set by the store.
	addRow(ctx context.Context, tx Tx, r *row) error
	// pending returns up to limit outbox rows, in commit order.
	pending(ctx context.Context, limit int) ([]row, error)
	// outboxStats counts the outbox rows and returns the write time of
	// the first one in commit order (0 if none).
	outboxStats(ctx context.Context) (n int, first int64, err error)
	// remove deletes the outbox rows.
	remove(ctx context.Context, rows []row) error
	// handle runs fn in a new transaction with the inbox row (consumer,
	// id) stamped at, inserted only if absent, and commits if fn returns
	// nil. When the row exists it runs nothing and reports dup. A store
	// that expires rows itself keeps the row for keep.
	handle(ctx context.Context, consumer, id string, at time.Time, keep time.Duration, fn func(tx Tx) error) (dup bool, err error)
	// cleanInbox deletes up to limit of consumer's inbox rows written
	// before cutoff and returns how many it deleted.
	cleanInbox(ctx context.Context, consumer string, cutoff time.Time, limit int) (int, error)
}

// row is one outbox row.
type row struct {
	ID      string `json:"id"`
	Topic   string `json:"t"`
	Key     string `json:"k,omitempty"`
	Payload []byte `json:"p,omitempty"`
	Written int64  `json:"w"` // Unix nanoseconds
	// Trace is the producer span's context (WithTracing), sent as
	// headers; the SQL store does not keep it.
	Trace map[string]string `json:"tc,omitempty"`
	seq   int64             // commit order (SQL) or stamp (Badger)
	key   []byte            // the Badger key
}

func (r row) envelope() envelope {
	return envelope{ID: r.ID, Topic: r.Topic, Key: r.Key, Written: time.Unix(0, r.Written), trace: r.Trace}
}
