package msg

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/concordrpc/concord/coord/localstore"
)

// Key layout in the Badger store.
const (
	// badgerOutbox + 8-byte big-endian stamp + ID: an outbox row, in
	// commit order.
	badgerOutbox = "concord/msg/out/"
	// badgerInbox + consumer + "/" + ID: an inbox row, with a TTL.
	badgerInbox = "concord/msg/in/"
)

// BadgerStore keeps outbox and inbox rows in the instance's local Badger
// store, under keys starting with "concord/msg/". Outbox rows are ordered
// by a stamp that grows strictly within the process (the wall clock when
// it runs ahead, else the last stamp plus one), which is the commit order
// of transactions that do not overlap. Inbox rows expire by Badger's TTL
// after the inbox retention. Use one BadgerStore per localstore.Store. It
// is safe for concurrent use.
type BadgerStore struct {
	db *localstore.Store

	mu      sync.Mutex
	started bool
	last    int64 // last stamp given
}

var _ Store[*localstore.Tx] = (*BadgerStore)(nil)

// Badger returns the Store in db. The caller keeps ownership of db.
func Badger(db *localstore.Store) *BadgerStore { return &BadgerStore{db: db} }

// stamp returns the next outbox stamp. The first call starts after the
// last row a previous process left, so that a clock that went back across
// a restart cannot put new rows before old ones.
func (s *BadgerStore) stamp(now time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		err := s.db.Scan([]byte(badgerOutbox), func(k, _ []byte) error {
			if st, ok := stampOf(k); ok {
				s.last = max(s.last, st)
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		s.started = true
	}
	s.last = max(s.last+1, now.UnixNano())
	return s.last, nil
}

func stampOf(k []byte) (int64, bool) {
	rest := k[len(badgerOutbox):]
	if len(rest) < 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(rest)), true
}

func (s *BadgerStore) addRow(_ context.Context, tx *localstore.Tx, r *row) error {
	if tx == nil {
		return fmt.Errorf("%w: nil transaction", ErrInvalid)
	}
	st, err := s.stamp(time.Unix(0, r.Written))
	if err != nil {
		return err
	}
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	k := binary.BigEndian.AppendUint64([]byte(badgerOutbox), uint64(st))
	return tx.Set(append(k, r.ID...), v)
}

func (s *BadgerStore) pending(_ context.Context, limit int) ([]row, error) {
	var rows []row
	errFull := errors.New("full")
	err := s.db.Scan([]byte(badgerOutbox), func(k, v []byte) error {
		if len(rows) >= limit {
			return errFull
		}
		var r row
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("msg: corrupt outbox row %q: %w", k, err)
		}
		r.seq, _ = stampOf(k)
		r.key = k
		rows = append(rows, r)
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		return nil, err
	}
	return rows, nil
}

func (s *BadgerStore) outboxStats(context.Context) (int, int64, error) {
	n, first := 0, int64(0)
	err := s.db.Scan([]byte(badgerOutbox), func(k, v []byte) error {
		if n++; n == 1 {
			var r row
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("msg: corrupt outbox row %q: %w", k, err)
			}
			first = r.Written
		}
		return nil
	})
	return n, first, err
}

func (s *BadgerStore) remove(_ context.Context, rows []row) error {
	// Blind deletes never conflict; chunks stay within a transaction's
	// limits.
	for len(rows) > 0 {
		n := min(len(rows), 1000)
		err := s.db.Update(func(tx *localstore.Tx) error {
			for _, r := range rows[:n] {
				if err := tx.Delete(r.key); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

func (s *BadgerStore) handle(ctx context.Context, consumer, id string, at time.Time, keep time.Duration, fn func(tx *localstore.Tx) error) (bool, error) {
	key := []byte(badgerInbox + consumer + "/" + id)
	var dup bool
	err := s.db.Update(func(tx *localstore.Tx) error {
		dup = false // Update may run this more than once
		if err := ctx.Err(); err != nil {
			return err
		}
		// The Get records the key, so two handlers of one message cannot
		// both commit: the second conflicts, runs again and finds the row.
		_, err := tx.Get(key)
		switch {
		case err == nil:
			dup = true
			return nil
		case !errors.Is(err, localstore.ErrNotFound):
			return err
		}
		if err := tx.SetWithTTL(key, binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano())), max(keep, time.Second)); err != nil {
			return err
		}
		return fn(tx)
	})
	return dup, err
}

// cleanInbox implements Store: Badger expires inbox rows by their TTL.
func (s *BadgerStore) cleanInbox(context.Context, string, time.Time, int) (int, error) { return 0, nil }
