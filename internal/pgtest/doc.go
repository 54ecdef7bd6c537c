// Package pgtest gives tests a real PostgreSQL database of their own.
//
// The server is named by the environment variable CONCORD_TEST_POSTGRES, a
// DSN such as
//
//	postgres://concord:concord-test@127.0.0.1:5432/concord_test?sslmode=disable
//
// which .ci/run sets after starting a server with .ci/postgres.sh (run
// that script by hand to get one locally). Each NewSchema creates a fresh
// schema in that database and every handle opened on it has the schema as
// its search_path, so unqualified table names are private to the test and
// tests may run in parallel; the schema is dropped in t.Cleanup, after the
// test's handles are closed.
//
// Without the variable a test that asks for a database is skipped, with a
// message that says how to get one. With it set, a server that cannot be
// reached fails the test: CI sets the variable, and a broken server must
// not turn into silently skipped tests.
//
// Handles use the pgx driver (github.com/jackc/pgx/v5/stdlib) through
// database/sql.
package pgtest
