package localstore

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Errors returned by the store. Each method's doc names the ones it returns;
// they are wrapped with %w, so test them with errors.Is.
var (
	// ErrNotFound is returned by Get when the key does not exist, was
	// deleted or has expired.
	ErrNotFound = errors.New("localstore: not found")
	// ErrClosed is returned by every method called after Close started.
	ErrClosed = errors.New("localstore: closed")
	// ErrDirInUse is returned by Open when another store, in this process
	// or another one, has the directory open.
	ErrDirInUse = errors.New("localstore: directory in use by another store")
	// ErrConflict is returned by Update when every attempt conflicted with
	// a concurrent transaction (see WithMaxAttempts). Nothing was written.
	ErrConflict = errors.New("localstore: transaction conflict")
	// ErrInvalid is returned for an empty key, a key starting with Badger's
	// reserved prefix "!badger!", a TTL below one second or an empty
	// directory.
	ErrInvalid = errors.New("localstore: invalid argument")
	// ErrTooLarge is returned when a key is longer than MaxKeySize, a value
	// is larger than MaxValueSize, or a transaction holds more writes than
	// one commit can carry (see the package doc). Split the work into
	// several transactions.
	ErrTooLarge = errors.New("localstore: too large")
	// ErrReadOnly is returned by Tx.Set, Tx.SetWithTTL and Tx.Delete inside
	// View.
	ErrReadOnly = errors.New("localstore: read-only transaction")
	// ErrTxDone is returned by a Tx method called after the function given
	// to Update or View returned.
	ErrTxDone = errors.New("localstore: transaction already finished")
)

// mapErr turns a Badger error into one of the package's sentinels, adding op
// as context. Errors without a sentinel keep Badger's text behind the prefix.
func mapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return ErrNotFound
	case errors.Is(err, badger.ErrDBClosed):
		return ErrClosed
	case errors.Is(err, badger.ErrConflict):
		return ErrConflict
	case errors.Is(err, badger.ErrEmptyKey), errors.Is(err, badger.ErrInvalidKey):
		return fmt.Errorf("%w: %s: %v", ErrInvalid, op, err)
	case errors.Is(err, badger.ErrTxnTooBig):
		return fmt.Errorf("%w: %s: transaction exceeds one commit batch", ErrTooLarge, op)
	case errors.Is(err, badger.ErrReadOnlyTxn):
		return ErrReadOnly
	case errors.Is(err, badger.ErrDiscardedTxn):
		return ErrTxDone
	}
	return fmt.Errorf("localstore: %s: %w", op, err)
}
