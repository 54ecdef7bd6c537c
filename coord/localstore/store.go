package localstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// KV is the local durable key-value store that Concord's features depend on
// (the transactional outbox, the TCC barrier, the inbox dedupe table, the
// fencing-token guard). *Store implements it; depend on KV to keep a
// feature's needs visible and to allow wrappers.
type KV interface {
	// Get returns a copy of key's value, or ErrNotFound.
	Get(key []byte) ([]byte, error)
	// Set durably writes value under key.
	Set(key, value []byte) error
	// Delete durably removes key; deleting a missing key is not an error.
	Delete(key []byte) error
	// Scan calls fn for every key with prefix, in key order, on one
	// consistent snapshot, and stops at fn's first error.
	Scan(prefix []byte, fn func(key, value []byte) error) error
	// Update runs fn in a read-write transaction and commits it
	// atomically, rerunning fn on conflicts.
	Update(fn func(tx *Tx) error) error
	// View runs fn in a read-only transaction on one consistent snapshot.
	View(fn func(tx *Tx) error) error
}

var _ KV = (*Store)(nil)

// Update's backoff between conflicting attempts: full jitter, doubling from
// minBackoff up to maxBackoff. Spreading the retries is what lets many
// writers of one hot key all get through instead of colliding again.
const (
	minBackoff = 100 * time.Microsecond
	maxBackoff = 10 * time.Millisecond
)

// Store is a local durable key-value store on Badger. Open it with Open and
// release it with Close. See the package doc for its guarantees.
//
// A Store is safe for concurrent use by multiple goroutines.
type Store struct {
	db  *badger.DB
	cfg config

	mu       sync.Mutex // guards closed and inflight.Add
	closed   bool
	inflight sync.WaitGroup // calls in progress; Close waits for them

	closing   chan struct{} // closed when Close starts
	gcDone    chan struct{} // closed when the GC goroutine has exited
	closeOnce sync.Once
	closeErr  error

	gcRuns atomic.Int64 // value log GC attempts, for tests
}

// Open opens the store in dir, creating the directory and an empty store if
// needed, with the small-footprint profile described in the package doc.
// Only one Store may have a directory open at a time, across processes.
//
// Open returns ErrInvalid for an empty dir and ErrDirInUse when another
// Store has dir open. The caller must Close the returned Store.
func Open(dir string, opts ...Option) (*Store, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: empty directory", ErrInvalid)
	}
	cfg := newConfig(opts)
	db, err := badger.Open(badgerOptions(dir, cfg))
	if err != nil {
		// Badger reports a held directory lock with this text on every
		// platform, and without an error value to match (its wrapping
		// flattens the errno). TestOpenTwice pins it.
		if strings.Contains(err.Error(), "Another process is using this Badger database") {
			return nil, fmt.Errorf("%w: %s", ErrDirInUse, dir)
		}
		return nil, fmt.Errorf("localstore: open %s: %w", dir, err)
	}
	s := &Store{
		db:      db,
		cfg:     cfg,
		closing: make(chan struct{}),
		gcDone:  make(chan struct{}),
	}
	if cfg.gcInterval > 0 {
		go s.runGC(cfg.gcInterval)
	} else {
		close(s.gcDone)
	}
	return s, nil
}

// Close stops the value log GC, waits for calls in progress to return, and
// closes the database, flushing memtables to disk. Calls that start after
// Close has begun return ErrClosed. Close is idempotent: later calls return
// the first call's result. Calling Close from inside a function given to
// Update or View deadlocks, as Close waits for that call.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.closing)
		<-s.gcDone
		s.inflight.Wait()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("localstore: close: %w", err)
		}
	})
	return s.closeErr
}

// acquire registers a call in progress, or returns ErrClosed. Calls never
// hold a lock while they run, so a Store method called from inside an
// Update or View function cannot deadlock with Close.
func (s *Store) acquire() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.inflight.Add(1)
	return nil
}

func (s *Store) release() { s.inflight.Done() }

// Get returns a copy of the value stored under key, which the caller may
// keep and modify. An empty value is returned as an empty, non-nil slice.
//
// Get returns ErrNotFound, ErrInvalid or ErrTooLarge for a bad key, and
// ErrClosed.
func (s *Store) Get(key []byte) ([]byte, error) {
	var value []byte
	err := s.View(func(tx *Tx) error {
		var err error
		value, err = tx.Get(key)
		return err
	})
	return value, err
}

// Set writes value under key in its own transaction, durably unless
// WithSyncWrites(false) was given. The store copies key and value.
//
// Set returns ErrInvalid or ErrTooLarge for a bad key or value, and
// ErrClosed.
func (s *Store) Set(key, value []byte) error {
	return s.Update(func(tx *Tx) error { return tx.Set(key, value) })
}

// Delete removes key in its own transaction, durably unless
// WithSyncWrites(false) was given. Deleting a missing key is not an error.
//
// Delete returns ErrInvalid or ErrTooLarge for a bad key, and ErrClosed.
func (s *Store) Delete(key []byte) error {
	return s.Update(func(tx *Tx) error { return tx.Delete(key) })
}

// Scan calls fn for each key that starts with prefix (every key if prefix
// is empty), in ascending byte order, on one consistent snapshot: writes
// committed after Scan started are not seen. key and value are copies that
// fn may keep. Scan stops at fn's first error and returns it unchanged.
//
// Scan returns ErrClosed, or fn's error.
func (s *Store) Scan(prefix []byte, fn func(key, value []byte) error) error {
	return s.View(func(tx *Tx) error { return tx.Scan(prefix, fn) })
}

// View runs fn in a read-only transaction: every read inside fn sees the
// same snapshot, taken when View starts. Writes through tx return
// ErrReadOnly. tx is valid only until fn returns.
//
// View returns ErrClosed, or fn's error unchanged.
func (s *Store) View(fn func(tx *Tx) error) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	tx := &Tx{txn: txn}
	defer tx.finish()
	return fn(tx)
}

// Update runs fn in a read-write transaction and commits its writes
// atomically: all of them or none become visible, at once, and (unless
// WithSyncWrites(false) was given) are on disk when Update returns nil.
//
// If a key fn read through tx (with Get, including a key that was missing,
// or a key Scan returned) was changed by a transaction that committed after
// fn's snapshot was taken, the commit fails and Update runs fn again on a
// new snapshot, after a short randomized backoff, up to the WithMaxAttempts
// limit. fn must therefore have no effects other than through tx. Writes
// are buffered in tx and discarded if fn returns an error. tx is valid only
// until fn returns.
//
// Update returns fn's error unchanged, ErrConflict when every attempt
// conflicted, ErrTooLarge when the writes exceed one commit, and ErrClosed
// (also when Close starts while Update waits to retry).
func (s *Store) Update(fn func(tx *Tx) error) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	for attempt := 1; ; attempt++ {
		conflict, err := s.try(fn)
		if !conflict {
			return err
		}
		if attempt >= s.cfg.maxAttempts {
			return fmt.Errorf("%w: gave up after %d attempts", ErrConflict, attempt)
		}
		if !s.sleep(backoff(attempt)) {
			return ErrClosed
		}
	}
}

// try runs one attempt of Update; conflict reports a commit that lost to a
// concurrent transaction.
func (s *Store) try(fn func(tx *Tx) error) (conflict bool, err error) {
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	tx := &Tx{txn: txn, update: true}
	defer tx.finish()
	if err := fn(tx); err != nil {
		return false, err
	}
	tx.finish()
	if err := txn.Commit(); err != nil {
		if errors.Is(err, badger.ErrConflict) {
			return true, nil
		}
		return false, mapErr("commit", err)
	}
	return false, nil
}

// backoff returns a random delay in [0, min(minBackoff<<(attempt-1), maxBackoff)).
func backoff(attempt int) time.Duration {
	d := maxBackoff
	if shift := attempt - 1; shift < 7 { // 100µs << 7 > 10ms
		d = min(minBackoff<<shift, maxBackoff)
	}
	return rand.N(d)
}

// sleep waits for d and reports false if Close started meanwhile.
func (s *Store) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closing:
		return false
	}
}

func (s *Store) logger() *slog.Logger {
	if s.cfg.logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.cfg.logger
}

// Source hands out a local store, waiting for it if it is still opening:
// what a component needs that is made before its store is open.
// *concord.App implements it.
type Source interface {
	// Local returns the open store, or an error if it cannot be had
	// before ctx ends.
	Local(ctx context.Context) (*Store, error)
}
