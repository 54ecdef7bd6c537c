package tcc

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	_ "modernc.org/sqlite"

	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/internal/pgtest"
)

// fakeClock is a settable clock for barrier stamps.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// env is a barrier on a real store, with a business table ("effects")
// that handlers write through the barrier's local transaction.
type env struct {
	name    string
	b       Barrier
	clock   *fakeClock
	effects func(t *testing.T) []string  // committed effects, sorted
	rows    func(t *testing.T) int       // barrier rows (SQL) or keys (Badger)
	second  func(opts ...Option) Barrier // another barrier on the same store (another process)
	store   *localstore.Store            // Badger only
	db      *sql.DB                      // SQL only
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func openBadger(t *testing.T, opts ...Option) *env {
	t.Helper()
	s, err := localstore.Open(t.TempDir(), localstore.WithGCInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	clock := &fakeClock{t: t0}
	mk := func(more ...Option) Barrier {
		return NewBadgerBarrier(s, append(append([]Option{WithClock(clock.now)}, opts...), more...)...)
	}
	return &env{
		name:  "badger",
		b:     mk(),
		clock: clock,
		effects: func(t *testing.T) []string {
			var out []string
			if err := s.Scan([]byte("effect/"), func(k, _ []byte) error {
				out = append(out, strings.TrimPrefix(string(k), "effect/"))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			return out
		},
		rows: func(t *testing.T) int {
			n := 0
			if err := s.Scan([]byte("concord/tcc/"), func(_, _ []byte) error { n++; return nil }); err != nil {
				t.Fatal(err)
			}
			return n
		},
		second: mk,
		store:  s,
	}
}

// openSQLite opens a barrier in a fresh SQLite database file.
func openSQLite(t *testing.T, opts ...Option) *env {
	t.Helper()
	dsn := "file:" + filepath.Join(t.TempDir(), "app.db") + "?_txlock=immediate&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
	open := func(t testing.TB) *sql.DB {
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	return openSQL(t, "sqlite", SQLite(), open, opts)
}

// openPostgres opens a barrier in a fresh schema of the PostgreSQL server
// named by pgtest.EnvVar, and skips the test if there is none.
func openPostgres(t *testing.T, opts ...Option) *env {
	t.Helper()
	s := pgtest.NewSchema(t)
	return openSQL(t, "postgres", PostgreSQL(), s.Open, opts)
}

// openSQL opens a barrier in the database that open connects to. Each call
// of open returns another handle (own connection pool) on the same
// database, as another process would have.
func openSQL(t *testing.T, name string, d Dialect, open func(t testing.TB) *sql.DB, opts []Option) *env {
	t.Helper()
	db := open(t)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE TABLE effects (k TEXT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: t0}
	mk := func(db *sql.DB, more ...Option) Barrier {
		b, err := NewSQLBarrier(db, d, append(append([]Option{WithClock(clock.now)}, opts...), more...)...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := mk(db).(*SQLBarrier)
	if err := b.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateTable(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	return &env{
		name:  name,
		b:     b,
		clock: clock,
		db:    db,
		effects: func(t *testing.T) []string {
			rs, err := db.QueryContext(ctx, "SELECT k FROM effects ORDER BY k")
			if err != nil {
				t.Fatal(err)
			}
			defer rs.Close()
			var out []string
			for rs.Next() {
				var k string
				if err := rs.Scan(&k); err != nil {
					t.Fatal(err)
				}
				out = append(out, k)
			}
			if err := rs.Err(); err != nil {
				t.Fatal(err)
			}
			slices.Sort(out) // in Go: the server's collation may differ
			return out
		},
		rows: func(t *testing.T) int {
			var n int
			if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+DefaultTable).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		},
		// Another process: its own handle on the same database.
		second: func(more ...Option) Barrier { return mk(open(t), more...) },
	}
}

// stores are the barrier stores every barrier behaviour test runs on, each
// opened fresh per sub-test. PostgreSQL's sub-tests skip without
// pgtest.EnvVar.
var stores = []struct {
	name string
	open func(t *testing.T, opts ...Option) *env
}{
	{"badger", openBadger},
	{"sqlite", openSQLite},
	{"postgres", openPostgres},
}

// eachStore runs f in a sub-test per barrier store, on a fresh store
// opened with opts.
func eachStore(t *testing.T, opts []Option, f func(t *testing.T, e *env)) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) { f(t, s.open(t, opts...)) })
	}
}

// envs returns one env per barrier store; PostgreSQL only if
// pgtest.EnvVar is set, as the caller's own test would be skipped.
func envs(t *testing.T, opts ...Option) []*env {
	out := []*env{openBadger(t, opts...), openSQLite(t, opts...)}
	if os.Getenv(pgtest.EnvVar) != "" {
		out = append(out, openPostgres(t, opts...))
	}
	return out
}

// writeEffect writes key into the business table through the barrier's
// local transaction found in ctx.
func writeEffect(ctx context.Context, key string) error {
	if tx := BadgerTx(ctx); tx != nil {
		return tx.Set([]byte("effect/"+key), []byte("1"))
	}
	if tx := SQLTx(ctx); tx != nil {
		// $1 is a positional parameter in both PostgreSQL and SQLite.
		_, err := tx.ExecContext(ctx, "INSERT INTO effects (k) VALUES ($1)", key)
		return err
	}
	return errors.New("no local transaction in the handler's context")
}

func connectCode(t *testing.T, err error) connect.Code {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *connect.Error", err, err)
	}
	return ce.Code()
}
