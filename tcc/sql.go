package tcc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/concordrpc/concord/internal/keylock"
)

// DefaultTable is the name of the SQL barrier table.
const DefaultTable = "concord_tcc_barrier"

type sqlTxKey struct{}

// SQLTx returns the SQL transaction of the barrier that runs the current
// TCC handler, or nil outside one. The handler's statements through it
// commit together with the barrier row. The handler must not call Commit
// or Rollback on it: the barrier does, after the handler returns.
func SQLTx(ctx context.Context) *sql.Tx {
	tx, _ := ctx.Value(sqlTxKey{}).(*sql.Tx)
	return tx
}

// WithSQLTx returns a context in which SQLTx returns tx: for running a
// participant's handler outside a barrier, in tests and benchmarks that
// measure what the barrier costs. Calls through the barrier never need it.
func WithSQLTx(ctx context.Context, tx *sql.Tx) context.Context {
	return context.WithValue(ctx, sqlTxKey{}, tx)
}

// Dialect holds the SQL text of the barrier for one database. Use SQLite or
// PostgreSQL.
type Dialect struct {
	name        string
	placeholder func(i int) string // i from 1
}

// SQLite is the dialect of SQLite 3.24 or later (modernc.org/sqlite,
// driver name "sqlite"). Open the database with a busy timeout and
// immediate transactions (for modernc.org/sqlite,
// "?_txlock=immediate&_pragma=busy_timeout(5000)") so that a concurrent
// duplicate waits for the first call's transaction instead of failing
// with SQLITE_BUSY.
func SQLite() Dialect {
	return Dialect{name: "sqlite", placeholder: func(int) string { return "?" }}
}

// PostgreSQL is the dialect of PostgreSQL 9.5 or later (for example
// github.com/jackc/pgx/v5/stdlib). The default READ COMMITTED isolation is
// enough: the barrier relies on the primary key, on which a concurrent
// duplicate's insert waits until the first transaction ends and then
// finds its row. Under REPEATABLE READ or SERIALIZABLE (WithTxOptions)
// PostgreSQL aborts that duplicate's transaction as a serialization
// failure instead; the barrier then runs the call again in a new
// transaction, which finds the row, up to 5 attempts in all.
func PostgreSQL() Dialect {
	return Dialect{name: "postgres", placeholder: func(i int) string { return fmt.Sprintf("$%d", i) }}
}

// Name returns "sqlite" or "postgres".
func (d Dialect) Name() string { return d.name }

// DDL returns the statements that create the barrier table named table and
// its index, if they do not exist, for users who apply schema changes with
// their own migration tool. SQLBarrier.CreateTable runs them.
func (d Dialect) DDL(table string) []string {
	return []string{
		"CREATE TABLE IF NOT EXISTS " + table + " (" +
			"tx_id VARCHAR(128) NOT NULL, " +
			"branch_id VARCHAR(128) NOT NULL, " +
			"slot CHAR(1) NOT NULL, " +
			"state SMALLINT NOT NULL, " +
			"code INTEGER NOT NULL, " +
			"message TEXT NOT NULL, " +
			"created_at BIGINT NOT NULL, " +
			"PRIMARY KEY (tx_id, branch_id, slot))",
		"CREATE INDEX IF NOT EXISTS " + table + "_done ON " + table + " (slot, created_at)",
	}
}

// ph returns placeholders 1..n as a comma-separated list.
func (d Dialect) ph(from, n int) string {
	p := make([]string, n)
	for i := range p {
		p[i] = d.placeholder(from + i)
	}
	return strings.Join(p, ", ")
}

func (d Dialect) insertSQL(table string) string {
	return "INSERT INTO " + table + " (tx_id, branch_id, slot, state, code, message, created_at) VALUES (" +
		d.ph(1, 7) + ") ON CONFLICT (tx_id, branch_id, slot) DO NOTHING"
}

func (d Dialect) selectSQL(table string) string {
	return "SELECT state, code, message, created_at FROM " + table +
		" WHERE tx_id = " + d.placeholder(1) + " AND branch_id = " + d.placeholder(2) + " AND slot = " + d.placeholder(3)
}

func (d Dialect) cleanupSQL(table string) string {
	return "DELETE FROM " + table + " WHERE (tx_id, branch_id) IN (SELECT tx_id, branch_id FROM " + table +
		" WHERE slot = 'e' AND created_at < " + d.placeholder(1) + " ORDER BY created_at LIMIT " + d.placeholder(2) + ")"
}

// WithTable sets the SQL barrier table's name: 1 to 58 lowercase letters,
// digits and underscores, starting with a letter (58 so that the index
// name, the table name and "_done", fits in PostgreSQL's 63-byte
// identifiers); an invalid name makes NewSQLBarrier fail. BadgerBarrier
// ignores it. Default: DefaultTable.
func WithTable(name string) Option {
	return optionFunc(func(c *config) { c.table = name })
}

// WithTxOptions sets the options of the SQL transactions the barrier
// begins for handlers (isolation level). BadgerBarrier ignores it.
// Default: the driver's default isolation, read-write.
func WithTxOptions(o sql.TxOptions) Option {
	return optionFunc(func(c *config) { c.txOpt = o })
}

// maxTableName bounds the table name so that its index's name (the table
// name and "_done") fits in PostgreSQL's 63-byte identifiers: a longer
// name is cut, and two tables that differ only after the cut would share
// one index name, so the second CREATE INDEX IF NOT EXISTS would do
// nothing.
const maxTableName = 63 - len("_done")

var tableName = regexp.MustCompile(fmt.Sprintf(`^[a-z][a-z0-9_]{0,%d}$`, maxTableName-1))

// SQLBarrier is a Barrier in the user's own SQL database: each call runs
// in one database/sql transaction that holds the barrier row and the
// handler's statements (SQLTx), committed only if the handler succeeded.
// Duplicates are detected by the table's primary key (insert if absent),
// so they are caught across processes sharing the database too. It is
// safe for concurrent use.
type SQLBarrier struct {
	db      *sql.DB
	dialect Dialect
	cfg     *config
	locks   keylock.Map
	insert  string
	sel     string
	cleanup string
}

var _ Barrier = (*SQLBarrier)(nil)

// NewSQLBarrier returns a barrier in db, in the dialect's SQL. The caller
// keeps ownership of db. Create the table with CreateTable or the
// Dialect's DDL first. It fails for a nil db, a zero Dialect or an
// invalid WithTable name.
func NewSQLBarrier(db *sql.DB, dialect Dialect, opts ...Option) (*SQLBarrier, error) {
	cfg := newConfig(opts)
	if db == nil || dialect.placeholder == nil {
		return nil, errors.New("tcc: NewSQLBarrier: nil database or zero Dialect")
	}
	if !tableName.MatchString(cfg.table) {
		return nil, fmt.Errorf("tcc: NewSQLBarrier: invalid table name %q", cfg.table)
	}
	return &SQLBarrier{
		db: db, dialect: dialect, cfg: cfg,
		insert:  dialect.insertSQL(cfg.table),
		sel:     dialect.selectSQL(cfg.table),
		cleanup: dialect.cleanupSQL(cfg.table),
	}, nil
}

// CreateTable creates the barrier table and its index if they do not
// exist. Instances that start together may call it together.
func (b *SQLBarrier) CreateTable(ctx context.Context) error {
	for _, s := range b.dialect.DDL(b.cfg.table) {
		for attempt := 1; ; attempt++ {
			_, err := b.db.ExecContext(ctx, s)
			if err == nil {
				break
			}
			// PostgreSQL's IF NOT EXISTS does not cover a concurrent
			// creation: the loser fails on a catalog's unique index. Its
			// next try finds the table and does nothing.
			if attempt == 3 || !createRace(err) {
				return fmt.Errorf("tcc: create barrier table: %w", err)
			}
		}
	}
	return nil
}

// createRace reports whether err is how PostgreSQL fails a CREATE ... IF
// NOT EXISTS that raced with the same creation: unique_violation (23505)
// on a catalog, duplicate_table (42P07) or duplicate_object (42710).
func createRace(err error) bool {
	var se interface{ SQLState() string }
	if !errors.As(err, &se) {
		return false
	}
	switch se.SQLState() {
	case "23505", "42P07", "42710":
		return true
	}
	return false
}

// Run implements Barrier. Its unavailable errors wrap ErrStore and the
// driver's error.
func (b *SQLBarrier) Run(ctx context.Context, k BranchKey, phase Phase, fn func(ctx context.Context) error) (Outcome, error) {
	if err := k.Validate(); err != nil {
		return run(ctx, b.cfg, nil, k, phase, fn)
	}
	unlock, err := b.locks.Lock(ctx, k.hash())
	if err != nil {
		return OutcomeFailed, ctxErr(ctx)
	}
	defer unlock()
	return run(ctx, b.cfg, b.begin, k, phase, fn)
}

// sqlMaxAttempts bounds the attempts of one call whose transaction the
// database aborted as a serialization failure or a deadlock.
const sqlMaxAttempts = 5

// begin runs body in a transaction, and again in a new one, with a short
// pause, while the database aborts it as a serialization failure or a
// deadlock: under REPEATABLE READ and SERIALIZABLE, PostgreSQL reports a
// concurrent duplicate's row that way instead of letting the insert find
// it. Nothing was committed, so running the whole attempt again (barrier
// check and handler, as the Badger barrier does on a conflict) is safe.
func (b *SQLBarrier) begin(ctx context.Context, body func(ctx context.Context, tx localTx) error) error {
	for attempt := 1; ; attempt++ {
		err := b.attempt(ctx, body)
		if attempt == sqlMaxAttempts || !retryable(err) {
			return err
		}
		t := time.NewTimer(time.Duration(attempt) * 5 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// retryable reports whether err is a PostgreSQL serialization failure
// (SQLSTATE 40001) or deadlock (40P01), which abort the whole transaction
// and succeed when it is run again. Drivers expose the code through a
// SQLState method (pgx's *pgconn.PgError, lib/pq's *pq.Error).
func retryable(err error) bool {
	var se interface{ SQLState() string }
	if !errors.As(err, &se) {
		return false
	}
	switch se.SQLState() {
	case "40001", "40P01":
		return true
	}
	return false
}

func (b *SQLBarrier) attempt(ctx context.Context, body func(ctx context.Context, tx localTx) error) error {
	opt := b.cfg.txOpt
	tx, err := b.db.BeginTx(ctx, &opt)
	if err != nil {
		return err
	}
	// Rolls back on an error and on a panic in the handler, which would
	// otherwise hold the connection (and SQLite's write lock) forever; a
	// no-op after Commit.
	defer func() { _ = tx.Rollback() }()
	if err := body(WithSQLTx(ctx, tx), sqlLocal{b: b, tx: tx}); err != nil {
		return err
	}
	return tx.Commit()
}

// Cleanup implements Barrier. It runs one DELETE statement.
func (b *SQLBarrier) Cleanup(ctx context.Context, now time.Time) (int, error) {
	cutoff := now.Add(-b.cfg.retention).UnixNano()
	res, err := b.db.ExecContext(ctx, b.cleanup, cutoff, b.cfg.cleanupLimit)
	if err != nil {
		return 0, fmt.Errorf("tcc: cleanup: %w", err)
	}
	rows, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("tcc: cleanup: %w", err)
	}
	// Every finished branch has exactly two rows (try and end).
	return int((rows + 1) / 2), nil
}

type sqlLocal struct {
	b  *SQLBarrier
	tx *sql.Tx
}

func (l sqlLocal) insert(ctx context.Context, k BranchKey, s slot, r record) (bool, error) {
	// PostgreSQL's text cannot hold a NUL byte (the insert fails with
	// invalid_byte_sequence, so a refusal would not be recorded). Done for
	// every dialect, so that both replay the same message.
	if strings.IndexByte(r.Message, 0) >= 0 {
		r.Message = truncate(strings.ReplaceAll(r.Message, "\x00", "\uFFFD"), maxMessage)
	}
	res, err := l.tx.ExecContext(ctx, l.b.insert, k.TxID, k.BranchID, string(s), int(r.State), int64(r.Code), r.Message, r.At)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (l sqlLocal) get(ctx context.Context, k BranchKey, s slot) (record, bool, error) {
	var (
		st   int
		code int64
		r    record
	)
	err := l.tx.QueryRowContext(ctx, l.b.sel, k.TxID, k.BranchID, string(s)).Scan(&st, &code, &r.Message, &r.At)
	if errors.Is(err, sql.ErrNoRows) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, err
	}
	r.State = state(st)
	r.Code = codeOf(uint32(max(code, 0)))
	return r, true, nil
}
