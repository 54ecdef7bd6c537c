package tcc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
)

// TestPostgreSQLText pins the PostgreSQL dialect's SQL; what it does on a
// real server is tested by the barrier tests' postgres cases.
func TestPostgreSQLText(t *testing.T) {
	t.Parallel()
	d := PostgreSQL()
	for _, tc := range []struct{ got, want string }{
		{d.insertSQL("bar"), "INSERT INTO bar (tx_id, branch_id, slot, state, code, message, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tx_id, branch_id, slot) DO NOTHING"},
		{d.selectSQL("bar"), "SELECT state, code, message, created_at FROM bar WHERE tx_id = $1 AND branch_id = $2 AND slot = $3"},
		{d.cleanupSQL("bar"), "DELETE FROM bar WHERE (tx_id, branch_id) IN (SELECT tx_id, branch_id FROM bar WHERE slot = 'e' AND created_at < $1 ORDER BY created_at LIMIT $2)"},
		{strings.Join(d.DDL("bar"), ";\n"), "CREATE TABLE IF NOT EXISTS bar (tx_id VARCHAR(128) NOT NULL, branch_id VARCHAR(128) NOT NULL, slot CHAR(1) NOT NULL, state SMALLINT NOT NULL, code INTEGER NOT NULL, message TEXT NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (tx_id, branch_id, slot));\nCREATE INDEX IF NOT EXISTS bar_done ON bar (slot, created_at)"},
		{d.Name(), "postgres"},
	} {
		if tc.got != tc.want {
			t.Errorf("got  %s\nwant %s", tc.got, tc.want)
		}
	}
	if s := SQLite().insertSQL("bar"); strings.Contains(s, "$") || strings.Count(s, "?") != 7 {
		t.Errorf("SQLite insert %s", s)
	}
}

func TestNewSQLBarrierRejects(t *testing.T) {
	t.Parallel()
	db := &sql.DB{} // never used: construction fails first
	for _, tc := range []struct {
		name string
		db   *sql.DB
		d    Dialect
		opts []Option
	}{
		{"nil db", nil, SQLite(), nil},
		{"zero dialect", db, Dialect{}, nil},
		{"bad table", db, SQLite(), []Option{WithTable("x; DROP TABLE y")}},
		{"upper table", db, SQLite(), []Option{WithTable("Barrier")}},
	} {
		if _, err := NewSQLBarrier(tc.db, tc.d, tc.opts...); err == nil {
			t.Errorf("%s: NewSQLBarrier succeeded", tc.name)
		}
	}
}

// sqlStores are the SQL barrier stores.
var sqlStores = stores[1:]

// eachSQLStore runs f in a sub-test per SQL barrier store, on a fresh
// store opened with opts.
func eachSQLStore(t *testing.T, opts []Option, f func(t *testing.T, e *env)) {
	for _, s := range sqlStores {
		t.Run(s.name, func(t *testing.T) { f(t, s.open(t, opts...)) })
	}
}

// eachSQLIsolation runs f in a sub-test per SQL barrier store and
// isolation level it offers, on a fresh store.
func eachSQLIsolation(t *testing.T, f func(t *testing.T, e *env)) {
	for _, s := range sqlStores {
		t.Run(s.name, func(t *testing.T) {
			levels := []sql.IsolationLevel{sql.LevelDefault}
			if s.name == "postgres" {
				levels = append(levels, sql.LevelRepeatableRead, sql.LevelSerializable)
			}
			for _, level := range levels {
				t.Run(level.String(), func(t *testing.T) {
					f(t, s.open(t, WithTxOptions(sql.TxOptions{Isolation: level})))
				})
			}
		})
	}
}

type result struct {
	out Outcome
	err error
}

// TestSQLSecondProcessWaits holds a Try's transaction open in one process
// while the same branch's call arrives in another process (its own
// *sql.DB): the primary key makes the second call wait for the first
// transaction and then find its row (or, if it rolled back, take its place).
func TestSQLSecondProcessWaits(t *testing.T) {
	errTransient := connect.NewError(connect.CodeUnavailable, "first Try crashed")
	for _, tc := range []struct {
		name     string
		firstErr error // the first Try's handler result
		phase    Phase // the second call
		cancel   bool  // the second call's context ends while it waits
		want     Outcome
		effects  []string
	}{
		{"try-try", nil, PhaseTry, false, OutcomeReplayed, []string{"first"}},
		{"try-cancel", nil, PhaseCancel, false, OutcomeExecuted, []string{"first", "second"}},
		{"failed-try-try", errTransient, PhaseTry, false, OutcomeExecuted, []string{"second"}},
		{"failed-try-cancel", errTransient, PhaseCancel, false, OutcomeSkipped, nil},
		{"second-gives-up", nil, PhaseTry, true, OutcomeFailed, []string{"first"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eachSQLIsolation(t, func(t *testing.T, e *env) {
				ctx := context.Background()
				a, b := e.b, e.second()
				k := key("tx-wait", "b1")
				inside, held := make(chan int), make(chan struct{})
				release := sync.OnceFunc(func() { close(held) })
				defer release() // on a failure too, so that no goroutine is left
				first := make(chan result, 1)
				go func() {
					out, err := a.Run(ctx, k, PhaseTry, func(ctx context.Context) error {
						if err := writeEffect(ctx, "first"); err != nil {
							return err
						}
						pid := 0
						if e.name == "postgres" {
							if err := SQLTx(ctx).QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
								return err
							}
						}
						inside <- pid
						<-held
						return tc.firstErr
					})
					first <- result{out, err}
				}()
				var pid int
				select {
				case pid = <-inside:
				case r := <-first:
					t.Fatalf("first Try returned (%d, %v) before its handler ran", r.out, r.err)
				}
				var runs atomic.Int64
				ctx2, cancel2 := context.WithCancel(ctx)
				defer cancel2()
				second := make(chan result, 1)
				go func() {
					out, err := b.Run(ctx2, k, tc.phase, func(ctx context.Context) error {
						runs.Add(1)
						return writeEffect(ctx, "second")
					})
					second <- result{out, err}
				}()
				if e.name == "postgres" {
					waitBlockedBy(t, e.db, pid)
				}
				select {
				case r := <-second:
					t.Fatalf("second call returned (%d, %v) while the first held the branch", r.out, r.err)
				case <-time.After(100 * time.Millisecond):
				}
				if tc.cancel {
					cancel2()
					r := <-second
					if r.out != tc.want || connectCode(t, r.err) != connect.CodeCanceled {
						t.Errorf("second call after its context ended = (%d, %v), want canceled", r.out, r.err)
					}
				}
				release()
				if r := <-first; (r.err == nil) != (tc.firstErr == nil) {
					t.Fatalf("first Try = (%d, %v), want error %v", r.out, r.err, tc.firstErr)
				}
				if !tc.cancel {
					r := <-second
					mustOutcome(t, r.out, r.err, tc.want)
				}
				if got := e.effects(t); !slices.Equal(got, tc.effects) {
					t.Fatalf("effects %v, want %v", got, tc.effects)
				}
				want := int64(0)
				if slices.Contains(tc.effects, "second") {
					want = 1
				}
				if runs.Load() != want {
					t.Fatalf("second handler ran %d times, want %d", runs.Load(), want)
				}
			})
		})
	}
}

// Concurrent duplicates of each phase from two processes (two *sql.DB
// handles), at every isolation level: one call runs the handler, the others
// are answered from its row.
func TestSQLConcurrentDuplicatesIsolation(t *testing.T) {
	const n = 8
	eachSQLIsolation(t, func(t *testing.T, e *env) {
		bs := []Barrier{e.b, e.second()}
		k := key("tx-iso", "b1")
		for _, ph := range []struct {
			phase  Phase
			effect string
		}{{PhaseTry, "try"}, {PhaseCancel, "cancel"}} {
			var c counter
			var wg sync.WaitGroup
			outs := make([]Outcome, n)
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					outs[i], errs[i] = bs[i%2].Run(context.Background(), k, ph.phase, c.fn(ph.effect))
				})
			}
			wg.Wait()
			executed := 0
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("%s call %d: %v", ph.effect, i, errs[i])
				}
				switch outs[i] {
				case OutcomeExecuted:
					executed++
				case OutcomeReplayed:
				default:
					t.Fatalf("%s call %d: outcome %d", ph.effect, i, outs[i])
				}
			}
			if executed != 1 || c.runs.Load() != 1 {
				t.Fatalf("%s: %d calls executed, handler ran %d times; want 1 and 1", ph.effect, executed, c.runs.Load())
			}
		}
		if got, want := e.effects(t), []string{"cancel", "try"}; !slices.Equal(got, want) {
			t.Fatalf("effects %v, want %v", got, want)
		}
	})
}

// waitBlockedBy waits until a PostgreSQL backend waits for a lock that the
// backend pid holds.
func waitBlockedBy(t *testing.T, db *sql.DB, pid int) {
	t.Helper()
	for range 500 {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no backend waited for backend %d within 5s", pid)
}

// A refusal message is stored as text whatever bytes the handler put in
// it, and replayed the same (cut to 256 bytes, invalid UTF-8 replaced).
func TestSQLRefusalMessageBytes(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes of 2-byte runes
	for _, tc := range []struct{ name, msg, want string }{
		{"nul", "no\x00funds", "no\uFFFDfunds"},
		{"invalid-utf8", "bad \xff\xfe byte", "bad \uFFFD byte"},
		{"long", long, long[:256]},
		{"empty", "", ""},
		{"nul-long", strings.Repeat("\x00", 200), strings.Repeat("\uFFFD", 85)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachSQLStore(t, nil, func(t *testing.T, e *env) {
				var runs atomic.Int64
				refuse := func(context.Context) error {
					runs.Add(1)
					return connect.NewError(connect.CodeInvalidArgument, tc.msg)
				}
				k := key("tx-msg", "b1")
				out, err := e.b.Run(context.Background(), k, PhaseTry, refuse)
				if out != OutcomeFailed || connectCode(t, err) != connect.CodeInvalidArgument {
					t.Fatalf("first Try = (%d, %v)", out, err)
				}
				out, err = e.b.Run(context.Background(), k, PhaseTry, refuse)
				var ce *connect.Error
				if out != OutcomeReplayed || !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument || ce.Message() != tc.want {
					t.Fatalf("repeated Try = (%d, %v), want the refusal %q replayed", out, err, tc.want)
				}
				if runs.Load() != 1 {
					t.Fatalf("handler ran %d times, want 1", runs.Load())
				}
			})
		})
	}
}

// Barrier tables whose names are as long as allowed and differ only in
// their last byte each get their own index: PostgreSQL cuts identifiers
// to 63 bytes, and the index name is the table name plus "_done".
func TestSQLLongTableNames(t *testing.T) {
	long := strings.Repeat("t", maxTableName-1)
	eachSQLStore(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		for _, name := range []string{long + "1", long + "2"} {
			b, err := NewSQLBarrier(e.db, e.b.(*SQLBarrier).dialect, WithTable(name))
			if err != nil {
				t.Fatal(err)
			}
			if err := b.CreateTable(ctx); err != nil {
				t.Fatal(err)
			}
			q := "SELECT count(*) FROM pg_indexes WHERE tablename = $1 AND indexname = $2"
			if e.name == "sqlite" {
				q = "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND name = $2"
			}
			var n int
			if err := e.db.QueryRowContext(ctx, q, name, name+"_done").Scan(&n); err != nil || n != 1 {
				t.Fatalf("index %s_done on %s: count (%d, %v), want 1", name, name, n, err)
			}
			mustRun(t, b, key("tx-long", "b1"), PhaseTry, func(context.Context) error { return nil }, OutcomeExecuted)
			mustRun(t, b, key("tx-long", "b1"), PhaseTry, func(context.Context) error { return nil }, OutcomeReplayed)
		}
		if _, err := NewSQLBarrier(e.db, SQLite(), WithTable(long+"12")); err == nil {
			t.Fatalf("NewSQLBarrier accepted a %d-byte table name", len(long)+2)
		}
	})
}

// Instances that start together create the table together.
func TestSQLConcurrentCreateTable(t *testing.T) {
	for _, s := range sqlStores {
		t.Run(s.name, func(t *testing.T) {
			for i := range 5 {
				e := s.open(t, WithTable(fmt.Sprintf("concurrent_%d", i)))
				var wg sync.WaitGroup
				errs := make([]error, 4)
				for j := range errs {
					b := e.second(WithTable(fmt.Sprintf("concurrent_create_%d", i))).(*SQLBarrier)
					wg.Go(func() { errs[j] = b.CreateTable(context.Background()) })
				}
				wg.Wait()
				for j, err := range errs {
					if err != nil {
						t.Fatalf("round %d, CreateTable %d: %v", i, j, err)
					}
				}
			}
		})
	}
}
