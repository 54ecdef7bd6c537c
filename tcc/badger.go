package tcc

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/internal/keylock"
)

// Key layout in the Badger store. Branch keys are digests, never the IDs.
const (
	// badgerRowPrefix + hash + "/" + slot: a barrier row.
	badgerRowPrefix = "concord/tcc/barrier/"
	// badgerDonePrefix + 8-byte big-endian stamp + hash: a finished
	// branch, in time order, for Cleanup.
	badgerDonePrefix = "concord/tcc/done/"
)

type badgerTxKey struct{}

// BadgerTx returns the Badger transaction of the barrier that runs the
// current TCC handler, or nil outside one. The handler's writes through it
// commit together with the barrier row. It is valid only until the
// handler returns.
func BadgerTx(ctx context.Context) *localstore.Tx {
	tx, _ := ctx.Value(badgerTxKey{}).(*localstore.Tx)
	return tx
}

// WithBadgerTx returns a context in which BadgerTx returns tx: for running
// a participant's handler outside a barrier, in tests and benchmarks that
// measure what the barrier costs. Calls through the barrier never need it.
func WithBadgerTx(ctx context.Context, tx *localstore.Tx) context.Context {
	return context.WithValue(ctx, badgerTxKey{}, tx)
}

// BadgerBarrier is a Barrier in the instance's local Badger store. Each
// call runs in one localstore.Store.Update transaction (serializable,
// optimistic): the barrier rows and the handler's writes commit together
// or not at all. Calls of the same branch are serialized within the
// process, so a concurrent duplicate waits and then replays; a conflict
// with other writers makes Update rerun the handler, as localstore
// documents. It is safe for concurrent use.
type BadgerBarrier struct {
	src   LocalStore
	cfg   *config
	locks keylock.Map
}

// LocalStore hands out a local store, waiting for it if it is still
// opening. *concord.App implements it.
type LocalStore = localstore.Source

type openStore struct{ s *localstore.Store }

func (o openStore) Local(context.Context) (*localstore.Store, error) { return o.s, nil }

var _ Barrier = (*BadgerBarrier)(nil)

// NewBadgerBarrier returns a barrier that keeps its rows in store, under
// keys starting with "concord/tcc/". The caller keeps ownership of store.
func NewBadgerBarrier(store *localstore.Store, opts ...Option) *BadgerBarrier {
	return NewBadgerBarrierFrom(openStore{store}, opts...)
}

// NewBadgerBarrierFrom is NewBadgerBarrier on the store that src hands
// out, asked for on each call: for a barrier made before its store is
// open, such as on an App's local store (concord.WithTCCLocalBarrier). A
// call while src has no store gets unavailable (cause ErrStore) when src
// fails, or the call's own deadline.
func NewBadgerBarrierFrom(src LocalStore, opts ...Option) *BadgerBarrier {
	return &BadgerBarrier{src: src, cfg: newConfig(opts)}
}

// Run implements Barrier. Its unavailable errors wrap ErrStore and the
// localstore error (ErrConflict, ErrTooLarge, ErrClosed).
func (b *BadgerBarrier) Run(ctx context.Context, k BranchKey, phase Phase, fn func(ctx context.Context) error) (Outcome, error) {
	if err := k.Validate(); err != nil {
		return run(ctx, b.cfg, nil, k, phase, fn) // reports the bad key
	}
	unlock, err := b.locks.Lock(ctx, k.hash())
	if err != nil {
		return OutcomeFailed, ctxErr(ctx)
	}
	defer unlock()
	return run(ctx, b.cfg, b.begin, k, phase, fn)
}

func (b *BadgerBarrier) begin(ctx context.Context, body func(ctx context.Context, tx localTx) error) error {
	store, err := b.src.Local(ctx)
	if err != nil {
		return err
	}
	return store.Update(func(tx *localstore.Tx) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return body(WithBadgerTx(ctx, tx), badgerLocal{tx})
	})
}

// Cleanup implements Barrier. It runs in one Update transaction.
func (b *BadgerBarrier) Cleanup(ctx context.Context, now time.Time) (int, error) {
	cutoff := now.Add(-b.cfg.retention).UnixNano()
	n := 0
	store, err := b.src.Local(ctx)
	if err != nil {
		return 0, err
	}
	err = store.Update(func(tx *localstore.Tx) error {
		n = 0
		var done [][]byte
		errStop := errors.New("stop")
		err := tx.Scan([]byte(badgerDonePrefix), func(key, _ []byte) error {
			rest := key[len(badgerDonePrefix):]
			if len(rest) < 8 || int64(binary.BigEndian.Uint64(rest)) >= cutoff || len(done) >= b.cfg.cleanupLimit {
				return errStop
			}
			done = append(done, key)
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return err
		}
		for _, key := range done {
			h := string(key[len(badgerDonePrefix)+8:])
			for _, k := range []string{rowKey(h, slotTry), rowKey(h, slotEnd), string(key)} {
				if err := tx.Delete([]byte(k)); err != nil {
					return err
				}
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		n = len(done)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("tcc: cleanup: %w", err)
	}
	return n, nil
}

func rowKey(hash string, s slot) string { return badgerRowPrefix + hash + "/" + string(s) }

func doneKey(hash string, at int64) []byte {
	k := make([]byte, 0, len(badgerDonePrefix)+8+len(hash))
	k = append(k, badgerDonePrefix...)
	k = binary.BigEndian.AppendUint64(k, uint64(at))
	return append(k, hash...)
}

// badgerRecord is a row as stored: the IDs are kept to detect a digest
// collision instead of answering for another branch.
type badgerRecord struct {
	Tx      string `json:"tx"`
	Branch  string `json:"br"`
	State   state  `json:"s"`
	Code    uint32 `json:"c,omitempty"`
	Message string `json:"m,omitempty"`
	At      int64  `json:"at"`
}

type badgerLocal struct{ tx *localstore.Tx }

func (l badgerLocal) get(_ context.Context, k BranchKey, s slot) (record, bool, error) {
	v, err := l.tx.Get([]byte(rowKey(k.hash(), s)))
	if errors.Is(err, localstore.ErrNotFound) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, err
	}
	var br badgerRecord
	if err := json.Unmarshal(v, &br); err != nil {
		return record{}, false, fmt.Errorf("tcc: corrupt barrier row: %w", err)
	}
	if br.Tx != k.TxID || br.Branch != k.BranchID {
		return record{}, false, errors.New("tcc: barrier row belongs to another branch (digest collision)")
	}
	return record{State: br.State, Code: codeOf(br.Code), Message: br.Message, At: br.At}, true, nil
}

func (l badgerLocal) insert(ctx context.Context, k BranchKey, s slot, r record) (bool, error) {
	// The Get records the key for conflict detection, so two transactions
	// that both find it missing cannot both commit.
	if _, ok, err := l.get(ctx, k, s); err != nil || ok {
		return false, err
	}
	v, err := json.Marshal(badgerRecord{Tx: k.TxID, Branch: k.BranchID, State: r.State, Code: uint32(r.Code), Message: r.Message, At: r.At})
	if err != nil {
		return false, err
	}
	if err := l.tx.Set([]byte(rowKey(k.hash(), s)), v); err != nil {
		return false, err
	}
	if s == slotEnd {
		if err := l.tx.Set(doneKey(k.hash(), r.At), nil); err != nil {
			return false, err
		}
	}
	return true, nil
}
