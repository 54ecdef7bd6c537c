package tcc

import (
	"database/sql"
	"strings"
	"testing"
)

// The PostgreSQL dialect is checked as text only; the tests run SQLite.
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
