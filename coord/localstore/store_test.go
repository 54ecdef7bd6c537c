package localstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// open opens a store in a fresh temporary directory and closes it at the end
// of the test.
func open(t testing.TB, opts ...Option) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func mustGet(t *testing.T, kv KV, key string) string {
	t.Helper()
	v, err := kv.Get([]byte(key))
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return string(v)
}

func wantNotFound(t *testing.T, kv KV, key string) {
	t.Helper()
	if v, err := kv.Get([]byte(key)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, v, err)
	}
}

func TestCRUD(t *testing.T) {
	t.Parallel()
	s := open(t)

	wantNotFound(t, s, "a")
	if err := s.Set([]byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "a"); got != "1" {
		t.Fatalf("Get = %q, want 1", got)
	}
	if err := s.Set([]byte("a"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "a"); got != "2" {
		t.Fatalf("Get after overwrite = %q, want 2", got)
	}
	if err := s.Delete([]byte("a")); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, s, "a")
	if err := s.Delete([]byte("never-set")); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}

	// An empty value exists and reads back as an empty, non-nil slice.
	if err := s.Set([]byte("empty"), nil); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("empty")); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("Get(empty) = %#v, %v; want []byte{}, nil", v, err)
	}

	// A value above the inline threshold lives in the value log.
	big := bytes.Repeat([]byte("v"), 2*valueThreshold)
	if err := s.Set([]byte("big"), big); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "big"); got != string(big) {
		t.Fatalf("Get(big) returned %d bytes, want %d", len(got), len(big))
	}
}

func TestCopies(t *testing.T) {
	t.Parallel()
	s := open(t)

	key, value := []byte("k"), []byte("value")
	if err := s.Set(key, value); err != nil {
		t.Fatal(err)
	}
	copy(value, "XXXXX") // the store must have copied it
	got, err := s.Get(key)
	if err != nil || string(got) != "value" {
		t.Fatalf("Get = %q, %v; want value", got, err)
	}
	copy(got, "YYYYY") // and must hand out copies
	if again := mustGet(t, s, "k"); again != "value" {
		t.Fatalf("Get after modifying a returned value = %q", again)
	}

	// Inside Update, a reused buffer must not change a pending write.
	buf := []byte("one")
	err = s.Update(func(tx *Tx) error {
		if err := tx.Set([]byte("b1"), buf); err != nil {
			return err
		}
		copy(buf, "two")
		return tx.Set([]byte("b2"), buf)
	})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustGet(t, s, "b1"), mustGet(t, s, "b2"); a != "one" || b != "two" {
		t.Fatalf("b1, b2 = %q, %q; want one, two", a, b)
	}
}

func TestInvalidArguments(t *testing.T) {
	t.Parallel()
	s := open(t)

	tests := []struct {
		name  string
		key   []byte
		value []byte
		want  error
	}{
		{"empty key", nil, []byte("v"), ErrInvalid},
		{"reserved prefix", []byte("!badger!head"), []byte("v"), ErrInvalid},
		{"key too long", bytes.Repeat([]byte("k"), MaxKeySize+1), []byte("v"), ErrTooLarge},
		{"value too large", []byte("k"), make([]byte, MaxValueSize+1), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Set(tt.key, tt.value); !errors.Is(err, tt.want) {
				t.Errorf("Set: %v, want %v", err, tt.want)
			}
			if tt.want == ErrInvalid {
				if _, err := s.Get(tt.key); !errors.Is(err, tt.want) {
					t.Errorf("Get: %v, want %v", err, tt.want)
				}
				if err := s.Delete(tt.key); !errors.Is(err, tt.want) {
					t.Errorf("Delete: %v, want %v", err, tt.want)
				}
			}
		})
	}
	if _, err := Open(""); !errors.Is(err, ErrInvalid) {
		t.Errorf("Open(\"\"): %v, want ErrInvalid", err)
	}
	err := s.Update(func(tx *Tx) error { return tx.SetWithTTL([]byte("k"), nil, 500*time.Millisecond) })
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("SetWithTTL(500ms): %v, want ErrInvalid", err)
	}
}

func TestUpdateIsAtomicUnderConcurrency(t *testing.T) {
	t.Parallel()
	// The invariant under test is no lost update. A generous attempt limit
	// keeps the random tail of retries (observed up to ~40 runs per Update
	// with 8 writers of one key) from failing the test.
	s := open(t, WithMaxAttempts(1000))
	const goroutines, increments = 8, 50
	key := []byte("counter")

	var runs atomic.Int64           // how often Update ran fn: more than the increments means retries
	most := make([]int, goroutines) // the most runs one Update needed, per goroutine
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for range increments {
				n := 0
				err := s.Update(func(tx *Tx) error {
					runs.Add(1)
					n++
					n := 0
					v, err := tx.Get(key)
					switch {
					case errors.Is(err, ErrNotFound):
					case err != nil:
						return err
					default:
						if n, err = strconv.Atoi(string(v)); err != nil {
							return err
						}
					}
					return tx.Set(key, []byte(strconv.Itoa(n+1)))
				})
				if err != nil {
					errs <- err
					return
				}
				most[g] = max(most[g], n)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Update: %v", err)
	}
	if got, want := mustGet(t, s, "counter"), strconv.Itoa(goroutines*increments); got != want {
		t.Fatalf("counter = %s, want %s (lost updates)", got, want)
	}
	t.Logf("%d increments took %d runs of fn (%d conflict retries, at most %d runs for one Update)",
		goroutines*increments, runs.Load(), runs.Load()-goroutines*increments, slices.Max(most))
}

// TestUpdateRetriesOnConflict makes the first attempt conflict for certain:
// after fn reads the key, another transaction commits a write to it.
func TestUpdateRetriesOnConflict(t *testing.T) {
	t.Parallel()
	s := open(t)
	key := []byte("k")
	if err := s.Set(key, []byte("0")); err != nil {
		t.Fatal(err)
	}
	runs := 0
	err := s.Update(func(tx *Tx) error {
		runs++
		v, err := tx.Get(key)
		if err != nil {
			return err
		}
		if runs == 1 {
			if err := s.Set(key, []byte("10")); err != nil { // a concurrent writer wins
				return err
			}
		}
		n, _ := strconv.Atoi(string(v))
		return tx.Set(key, []byte(strconv.Itoa(n+1)))
	})
	if err != nil {
		t.Fatal(err)
	}
	if runs != 2 {
		t.Errorf("fn ran %d times, want 2", runs)
	}
	if got := mustGet(t, s, "k"); got != "11" {
		t.Fatalf("k = %s, want 11: the retry must see the concurrent write", got)
	}

	// A read of a missing key conflicts with its concurrent creation too,
	// which is what makes insert-if-absent (inbox dedupe) safe.
	runs = 0
	err = s.Update(func(tx *Tx) error {
		runs++
		if _, err := tx.Get([]byte("id")); !errors.Is(err, ErrNotFound) {
			return nil // already there: nothing to do
		}
		if runs == 1 {
			if err := s.Set([]byte("id"), []byte("other")); err != nil {
				return err
			}
		}
		return tx.Set([]byte("id"), []byte("mine"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "id"); runs != 2 || got != "other" {
		t.Fatalf("runs = %d, id = %q; want 2, other", runs, got)
	}
}

func TestUpdateGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	s := open(t, WithMaxAttempts(3))
	key := []byte("k")
	runs := 0
	err := s.Update(func(tx *Tx) error {
		runs++
		if _, err := tx.Get(key); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := s.Set(key, []byte("other-"+strconv.Itoa(runs))); err != nil {
			return err
		}
		if err := tx.Set([]byte("side"), []byte("x")); err != nil {
			return err
		}
		return tx.Set(key, []byte("mine"))
	})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("Update: %v, want ErrConflict", err)
	}
	if runs != 3 {
		t.Errorf("fn ran %d times, want 3", runs)
	}
	if got := mustGet(t, s, "k"); got != "other-3" {
		t.Errorf("k = %q, want other-3", got)
	}
	wantNotFound(t, s, "side") // nothing of the failed transaction was written
}

func TestUpdateDiscardsWritesOnError(t *testing.T) {
	t.Parallel()
	s := open(t)
	boom := errors.New("boom")
	err := s.Update(func(tx *Tx) error {
		if err := tx.Set([]byte("a"), []byte("1")); err != nil {
			return err
		}
		if v, err := tx.Get([]byte("a")); err != nil || string(v) != "1" {
			t.Errorf("read own write = %q, %v", v, err)
		}
		return fmt.Errorf("wrapped: %w", boom)
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update: %v, want fn's error", err)
	}
	wantNotFound(t, s, "a")
}

func TestUpdateTooLarge(t *testing.T) {
	t.Parallel()
	s := open(t)
	value := make([]byte, valueThreshold-1) // inline: counts fully against the batch
	err := s.Update(func(tx *Tx) error {
		for i := range maxBatchSize/len(value) + 1 {
			if err := tx.Set([]byte(fmt.Sprintf("k%03d", i)), value); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Update: %v, want ErrTooLarge", err)
	}
	wantNotFound(t, s, "k000")
}

func TestViewIsReadOnly(t *testing.T) {
	t.Parallel()
	s := open(t)
	err := s.View(func(tx *Tx) error {
		if err := tx.Set([]byte("a"), nil); !errors.Is(err, ErrReadOnly) {
			t.Errorf("Set in View: %v, want ErrReadOnly", err)
		}
		if err := tx.Delete([]byte("a")); !errors.Is(err, ErrReadOnly) {
			t.Errorf("Delete in View: %v, want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestViewIsASnapshot(t *testing.T) {
	t.Parallel()
	s := open(t)
	if err := s.Set([]byte("a"), []byte("old")); err != nil {
		t.Fatal(err)
	}
	err := s.View(func(tx *Tx) error {
		if err := s.Set([]byte("a"), []byte("new")); err != nil {
			return err
		}
		if err := s.Set([]byte("b"), []byte("new")); err != nil {
			return err
		}
		if v, err := tx.Get([]byte("a")); err != nil || string(v) != "old" {
			t.Errorf("Get(a) in snapshot = %q, %v; want old", v, err)
		}
		if _, err := tx.Get([]byte("b")); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(b) in snapshot: %v, want ErrNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTxAfterFunctionReturns(t *testing.T) {
	t.Parallel()
	s := open(t)
	var kept *Tx
	if err := s.Update(func(tx *Tx) error { kept = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := kept.Get([]byte("a")); !errors.Is(err, ErrTxDone) {
		t.Errorf("Get: %v, want ErrTxDone", err)
	}
	if err := kept.Set([]byte("a"), nil); !errors.Is(err, ErrTxDone) {
		t.Errorf("Set: %v, want ErrTxDone", err)
	}
	if err := kept.Scan(nil, func(_, _ []byte) error { return nil }); !errors.Is(err, ErrTxDone) {
		t.Errorf("Scan: %v, want ErrTxDone", err)
	}
	if err := s.View(func(tx *Tx) error { kept = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := kept.Get([]byte("a")); !errors.Is(err, ErrTxDone) {
		t.Errorf("Get after View: %v, want ErrTxDone", err)
	}
}

func TestScan(t *testing.T) {
	t.Parallel()
	s := open(t)
	for _, k := range []string{"b/2", "a/1", "b/10", "c/1", "b/1", "b"} {
		if err := s.Set([]byte(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	scan := func(prefix string) []string {
		t.Helper()
		var got []string
		err := s.Scan([]byte(prefix), func(k, v []byte) error {
			if string(v) != "v"+string(k) {
				t.Errorf("value of %q = %q", k, v)
			}
			got = append(got, string(k))
			return nil
		})
		if err != nil {
			t.Fatalf("Scan(%q): %v", prefix, err)
		}
		return got
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"b/", []string{"b/1", "b/10", "b/2"}},
		{"b", []string{"b", "b/1", "b/10", "b/2"}},
		{"", []string{"a/1", "b", "b/1", "b/10", "b/2", "c/1"}},
		{"d", nil},
	}
	for _, tt := range tests {
		if got := scan(tt.prefix); fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Scan(%q) = %q, want %q", tt.prefix, got, tt.want)
		}
	}

	// Scan stops at fn's first error and returns it.
	stop := errors.New("stop")
	n := 0
	err := s.Scan([]byte("b/"), func(_, _ []byte) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Scan with failing fn: %v after %d calls, want stop after 1", err, n)
	}

	// Keys and values handed to fn may be kept.
	var keys, values [][]byte
	if err := s.Scan([]byte("b/"), func(k, v []byte) error {
		keys, values = append(keys, k), append(values, v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if string(keys[0]) != "b/1" || string(values[2]) != "vb/2" {
		t.Errorf("retained keys/values changed: %q %q", keys, values)
	}

	// Inside Update, Scan sees the transaction's own writes and may write.
	err = s.Update(func(tx *Tx) error {
		if err := tx.Set([]byte("b/0"), []byte("vb/0")); err != nil {
			return err
		}
		if err := tx.Delete([]byte("b/10")); err != nil {
			return err
		}
		var got []string
		err := tx.Scan([]byte("b/"), func(k, _ []byte) error {
			got = append(got, string(k))
			return tx.Set(append([]byte("seen/"), k...), append([]byte("vseen/"), k...))
		})
		if want := "[b/0 b/1 b/2]"; fmt.Sprint(got) != want {
			t.Errorf("Scan in Update = %v, want %s", got, want)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := scan("seen/"); fmt.Sprint(got) != "[seen/b/0 seen/b/1 seen/b/2]" {
		t.Errorf("writes made during Scan = %q", got)
	}
}

func TestSetWithTTL(t *testing.T) {
	t.Parallel()
	s := open(t)
	// Expiry has whole-second resolution (a key written at x.99 s with a
	// TTL of 3 s expires at x+3 s): the key lives at least 2 s, so the
	// read right after the write finds it even on a stalled machine, and
	// is gone within 3 s.
	err := s.Update(func(tx *Tx) error { return tx.SetWithTTL([]byte("lease"), []byte("x"), 3*time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "lease"); got != "x" {
		t.Fatalf("Get = %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Get([]byte("lease"))
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("key with a 3s TTL still present after 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.Scan(nil, func(k, _ []byte) error { return fmt.Errorf("expired key %q scanned", k) }); err != nil {
		t.Fatal(err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Enough data to flush memtables to tables and to use the value log.
	const n = 2000
	small := bytes.Repeat([]byte("s"), 1000)
	big := bytes.Repeat([]byte("b"), 2*valueThreshold)
	for i := 0; i < n; i += 100 {
		err := s.Update(func(tx *Tx) error {
			for j := i; j < i+100; j++ {
				v := small
				if j%50 == 0 {
					v = big
				}
				if err := tx.Set([]byte(fmt.Sprintf("k%05d", j)), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete([]byte("k00001")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	count := 0
	err = s.Scan([]byte("k"), func(k, v []byte) error {
		var i int
		if _, err := fmt.Sscanf(string(k), "k%05d", &i); err != nil {
			return err
		}
		want := small
		if i%50 == 0 {
			want = big
		}
		if !bytes.Equal(v, want) {
			return fmt.Errorf("%s: %d bytes, want %d", k, len(v), len(want))
		}
		count++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count != n-1 {
		t.Fatalf("reopened store has %d keys, want %d", count, n-1)
	}
	wantNotFound(t, s, "k00001")
}

func TestCloseIsIdempotentAndFinal(t *testing.T) {
	t.Parallel()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	key := []byte("k")
	nop := func(*Tx) error { return nil }
	ops := map[string]func() error{
		"Get":    func() error { _, err := s.Get(key); return err },
		"Set":    func() error { return s.Set(key, nil) },
		"Delete": func() error { return s.Delete(key) },
		"Scan":   func() error { return s.Scan(nil, func(_, _ []byte) error { return nil }) },
		"Update": func() error { return s.Update(nop) },
		"View":   func() error { return s.View(nop) },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

// TestCloseDuringWrites closes the store under concurrent writers: every
// write either completes or reports ErrClosed, and every completed write is
// there after reopening.
func TestCloseDuringWrites(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	const writers = 4
	acked := make([][]string, writers)
	var total atomic.Int64
	enough := make(chan struct{}) // closed once writes were acknowledged
	var once sync.Once
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; i < 1_000_000; i++ {
				key := fmt.Sprintf("w%d/%06d", w, i)
				err := s.Set([]byte(key), []byte(key))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Set: %v", err)
					return
				}
				acked[w] = append(acked[w], key)
				if total.Add(1) >= 4*writers {
					once.Do(func() { close(enough) })
				}
			}
			t.Errorf("writer %d never saw ErrClosed", w)
		})
	}
	// Close while every writer is still writing, after some writes were
	// acknowledged (else the test would prove nothing).
	select {
	case <-enough:
	case <-time.After(10 * time.Second):
		t.Fatalf("only %d writes acknowledged in 10s", total.Load())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if total.Load() < 4*writers {
		t.Fatalf("%d writes acknowledged before Close", total.Load())
	}

	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, keys := range acked {
		for _, k := range keys {
			if got := mustGet(t, s, k); got != k {
				t.Fatalf("%s = %q", k, got)
			}
		}
	}
}

func TestOpenTwice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := Open(dir); !errors.Is(err, ErrDirInUse) {
		if err == nil {
			s2.Close()
		}
		t.Fatalf("second Open of %s: %v, want ErrDirInUse", dir, err)
	}
	if err := s.Set([]byte("k"), []byte("v")); err != nil { // the first store is unharmed
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	defer s.Close()
	if got := mustGet(t, s, "k"); got != "v" {
		t.Fatalf("k = %q", got)
	}
}

// TestValueLogGCReclaimsSpace overwrites large values until the value log
// spans several files of garbage, and checks that a GC pass shrinks the
// value log on disk (a GC that rewrote nothing fails) and that the live
// values survive it.
func TestValueLogGCReclaimsSpace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := func() *Store {
		t.Helper()
		s, err := Open(dir, WithGCInterval(time.Hour), WithSyncWrites(false), withValueLogFileSize(1<<20))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	big := bytes.Repeat([]byte("b"), 2*valueThreshold)
	// Badger learns which value log files hold garbage from compactions
	// that drop old versions. Each round's memtable becomes an L0 table at
	// Close; with more L0 tables than numLevelZeroTables, Flatten compacts
	// them, dropping every overwritten version.
	const rounds, writes = numLevelZeroTables + 1, 100
	var s *Store
	for round := range rounds {
		s = open()
		for i := range writes {
			big[0] = byte(round*writes + i)
			if err := s.Set([]byte(fmt.Sprint(i%5)), big); err != nil {
				t.Fatal(err)
			}
		}
		if round < rounds-1 {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil { // flush the last memtable too
		t.Fatal(err)
	}
	s = open()
	defer s.Close()
	if err := s.db.Flatten(1); err != nil {
		t.Fatal(err)
	}
	before := vlogBytes(t, dir)
	s.collectGarbage()
	after := vlogBytes(t, dir)
	t.Logf("value log: %d KiB before GC, %d KiB after (%d GC calls)", before>>10, after>>10, s.gcRuns.Load())
	if after > before*3/4 {
		t.Fatalf("value log GC reclaimed too little: %d bytes before, %d after", before, after)
	}
	for i := range 5 {
		got, err := s.Get([]byte(fmt.Sprint(i)))
		if err != nil || len(got) != len(big) || got[0] != byte((rounds-1)*writes+writes-5+i) {
			t.Fatalf("key %d after GC: %v", i, err)
		}
	}
}

// vlogBytes sums the sizes of the value log files in dir.
func vlogBytes(t *testing.T, dir string) int64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestValueLogGCStopsAtClose runs the background GC often and checks that
// it runs and that Close stops it (goleak in TestMain).
func TestValueLogGCStopsAtClose(t *testing.T) {
	t.Parallel()
	s, err := Open(t.TempDir(), WithGCInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.gcRuns.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.gcRuns.Load() == 0 {
		t.Fatal("value log GC never ran")
	}
}
