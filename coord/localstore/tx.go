package localstore

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Tx is a transaction passed to the function given to Update or View. Reads
// see the snapshot taken when the transaction started plus the
// transaction's own writes; writes become visible to others only when
// Update commits.
//
// A Tx is valid only until that function returns (later calls return
// ErrTxDone) and is not safe for concurrent use.
type Tx struct {
	txn    *badger.Txn
	update bool
	done   bool
}

func (tx *Tx) finish() { tx.done = true }

func (tx *Tx) check(write bool) error {
	switch {
	case tx.done:
		return ErrTxDone
	case write && !tx.update:
		return ErrReadOnly
	}
	return nil
}

// Get returns a copy of the value stored under key, which the caller may
// keep and modify. An empty value is returned as an empty, non-nil slice.
// Inside Update, Get records key (even if missing) for conflict detection.
//
// Get returns ErrNotFound, ErrInvalid or ErrTooLarge for a bad key, and
// ErrTxDone.
func (tx *Tx) Get(key []byte) ([]byte, error) {
	if err := tx.check(false); err != nil {
		return nil, err
	}
	if err := checkKey(key); err != nil {
		return nil, err
	}
	item, err := tx.txn.Get(key)
	if err != nil {
		return nil, mapErr("get", err)
	}
	value, err := item.ValueCopy(nil)
	if err != nil {
		return nil, mapErr("get", err)
	}
	if value == nil {
		value = []byte{}
	}
	return value, nil
}

// Set writes value under key when the transaction commits. It copies key
// and value, so the caller may reuse them at once.
//
// Set returns ErrInvalid or ErrTooLarge for a bad key or value, ErrTooLarge
// when the transaction is full, ErrReadOnly inside View, and ErrTxDone.
func (tx *Tx) Set(key, value []byte) error {
	return tx.set(key, value, 0)
}

// SetWithTTL is Set with an expiry: after ttl the key reads as missing and
// compaction eventually removes it. Expiry is kept in whole seconds of the
// wall clock, so the key lives between ttl-1s and ttl; ttl must be at least
// one second.
//
// SetWithTTL returns the errors of Set, and ErrInvalid for a ttl below one
// second.
func (tx *Tx) SetWithTTL(key, value []byte, ttl time.Duration) error {
	if ttl < time.Second {
		return fmt.Errorf("%w: ttl %v is below one second", ErrInvalid, ttl)
	}
	return tx.set(key, value, ttl)
}

func (tx *Tx) set(key, value []byte, ttl time.Duration) error {
	if err := tx.check(true); err != nil {
		return err
	}
	if err := checkKey(key); err != nil {
		return err
	}
	if len(value) > MaxValueSize {
		return fmt.Errorf("%w: value of %d bytes exceeds %d", ErrTooLarge, len(value), MaxValueSize)
	}
	// Badger keeps references to the slices until the commit; copies let
	// the caller reuse its buffers, including across Update's retries.
	e := badger.NewEntry(bytes.Clone(key), bytes.Clone(value))
	if ttl > 0 {
		e = e.WithTTL(ttl)
	}
	return mapErr("set", tx.txn.SetEntry(e))
}

// Delete removes key when the transaction commits. Deleting a missing key
// is not an error.
//
// Delete returns ErrInvalid or ErrTooLarge for a bad key, ErrTooLarge when
// the transaction is full, ErrReadOnly inside View, and ErrTxDone.
func (tx *Tx) Delete(key []byte) error {
	if err := tx.check(true); err != nil {
		return err
	}
	if err := checkKey(key); err != nil {
		return err
	}
	return mapErr("delete", tx.txn.Delete(bytes.Clone(key)))
}

// Scan calls fn for each key that starts with prefix (every key if prefix
// is empty), in ascending byte order, including the transaction's own
// writes. key and value are copies that fn may keep. fn may call other Tx
// methods, including writes. Scan stops at fn's first error and returns it
// unchanged.
//
// Inside Update, every key Scan passes to fn is recorded for conflict
// detection, but the range is not: a key that a concurrent transaction
// inserts under prefix does not cause a conflict (a phantom). Guard such
// ranges with a key that every writer reads and writes.
//
// Scan returns ErrTxDone, or fn's error.
func (tx *Tx) Scan(prefix []byte, fn func(key, value []byte) error) error {
	if err := tx.check(false); err != nil {
		return err
	}
	it := tx.txn.NewIterator(badger.IteratorOptions{
		// Values are copied one by one below; prefetching would only add
		// goroutines and a second copy.
		PrefetchValues: false,
		Prefix:         prefix,
	})
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		value, err := item.ValueCopy(nil)
		if err != nil {
			return mapErr("scan", err)
		}
		if value == nil {
			value = []byte{}
		}
		if err := fn(item.KeyCopy(nil), value); err != nil {
			return err
		}
	}
	return nil
}

// badgerPrefix is the prefix Badger reserves for its internal keys.
const badgerPrefix = "!badger!"

func checkKey(key []byte) error {
	switch {
	case len(key) == 0:
		return fmt.Errorf("%w: empty key", ErrInvalid)
	case strings.HasPrefix(string(key), badgerPrefix):
		return fmt.Errorf("%w: key starts with the reserved prefix %q", ErrInvalid, badgerPrefix)
	case len(key) > MaxKeySize:
		return fmt.Errorf("%w: key of %d bytes exceeds %d", ErrTooLarge, len(key), MaxKeySize)
	}
	return nil
}
