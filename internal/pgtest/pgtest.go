package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// EnvVar is the environment variable that holds the test server's DSN.
const EnvVar = "CONCORD_TEST_POSTGRES"

// connectTimeout bounds reaching the server, so that a wrong address fails
// the test promptly instead of at the test binary's timeout.
const connectTimeout = 15 * time.Second

// Schema is a fresh PostgreSQL schema that belongs to one test. It is safe
// for concurrent use.
type Schema struct {
	// Name is the schema's name: "pgtest_" and 16 random hex digits.
	Name string
	cfg  *pgx.ConnConfig
	dsn  string
}

// NewSchema creates a fresh schema in the database named by EnvVar and
// drops it, with everything in it, when the test and its cleanups end. It
// skips the test if EnvVar is unset and fails it if the server cannot be
// reached or the schema cannot be created.
func NewSchema(t testing.TB) *Schema {
	t.Helper()
	dsn := os.Getenv(EnvVar)
	if dsn == "" {
		t.Skip(EnvVar + " is not set: set " + EnvVar + " to a PostgreSQL DSN; .ci/run starts one (export " + EnvVar + "=\"$(bash .ci/postgres.sh)\")")
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("pgtest: %s: %v", EnvVar, err) // pgx redacts the password

	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > connectTimeout {
		cfg.ConnectTimeout = connectTimeout
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails
	s := &Schema{Name: "pgtest_" + hex.EncodeToString(b[:]), cfg: cfg, dsn: dsn}

	admin := stdlib.OpenDB(*cfg.Copy())
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		t.Fatalf("pgtest: cannot reach the PostgreSQL server named by %s (%s:%d, database %q): %v",
			EnvVar, cfg.Host, cfg.Port, cfg.Database, err)
	}
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+s.ident()); err != nil {
		admin.Close()
		t.Fatalf("pgtest: create schema %s: %v", s.Name, err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+s.ident()+" CASCADE"); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", s.Name, err)
		}
	})
	return s
}

// Open returns a new handle, with its own connection pool, whose
// connections use the schema as their search_path: what another process
// sharing the database would have. It is closed in t.Cleanup, before the
// schema is dropped.
func (s *Schema) Open(t testing.TB) *sql.DB {
	t.Helper()
	cfg := s.cfg.Copy()
	cfg.RuntimeParams["search_path"] = s.Name
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("pgtest: close: %v", err)
		}
	})
	return db
}

// DSN returns a connection URL for the schema (its search_path set), for
// a child process. It fails the test if EnvVar is not a URL.
func (s *Schema) DSN(t testing.TB) string {
	t.Helper()
	u, err := url.Parse(s.dsn)
	if err != nil || u.Scheme == "" {
		t.Fatalf("pgtest: %s is not a postgres:// URL", EnvVar)
	}
	q := u.Query()
	q.Set("search_path", s.Name)
	u.RawQuery = q.Encode()
	return u.String()
}

func (s *Schema) ident() string { return pgx.Identifier{s.Name}.Sanitize() }

// DB returns a handle on a fresh schema of its own (NewSchema and Open):
// tables the test creates without a schema name are the test's alone.
func DB(t testing.TB) *sql.DB {
	t.Helper()
	return NewSchema(t).Open(t)
}
