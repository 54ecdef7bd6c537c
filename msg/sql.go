package msg

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/concordrpc/concord/tcc"
)

// The SQL store's tables.
const (
	// OutboxTable holds outbox rows until the relay published them.
	OutboxTable = "concord_msg_outbox"
	// InboxTable holds one row per (consumer, message) handled.
	InboxTable = "concord_msg_inbox"
)

// deleteChunk is how many outbox rows one DELETE statement removes.
const deleteChunk = 64

// SQLStore keeps outbox and inbox rows in the user's SQL database, in the
// tables OutboxTable and InboxTable, in the dialects of the TCC barrier
// (tcc.SQLite, tcc.PostgreSQL). Outbox rows are ordered by an
// auto-increment column: on SQLite, which serializes writers, that is
// the commit order; on PostgreSQL it is the commit order of transactions
// that do not overlap in time. Several processes may share the tables. It
// is safe for concurrent use.
type SQLStore struct {
	db      *sql.DB
	dialect tcc.Dialect
	txOpt   sql.TxOptions

	insert, list, stats, del, inbox, clean string
}

var _ Store[*sql.Tx] = (*SQLStore)(nil)

// SQL returns the Store in db, which speaks dialect (tcc.SQLite() or
// tcc.PostgreSQL(); open SQLite with a busy timeout and
// "_txlock=immediate", as the TCC barrier needs). The caller keeps
// ownership of db. Create the tables with CreateTables or the statements
// of DDL first. Options: WithTxOptions. It returns ErrInvalid for a nil db
// or an unknown dialect.
func SQL(db *sql.DB, dialect tcc.Dialect, opts ...Option) (*SQLStore, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: nil database", ErrInvalid)
	}
	ph, ok := placeholders(dialect)
	if !ok {
		return nil, fmt.Errorf("%w: dialect %q", ErrInvalid, dialect.Name())
	}
	return &SQLStore{
		db: db, dialect: dialect, txOpt: newConfig(opts).txOpt,
		insert: "INSERT INTO " + OutboxTable + " (id, topic, okey, payload, written_at) VALUES (" + ph(1, 5) + ")",
		list:   "SELECT seq, id, topic, okey, payload, written_at FROM " + OutboxTable + " ORDER BY seq LIMIT " + ph(1, 1),
		stats:  "SELECT count(*), COALESCE(MIN(written_at), 0) FROM " + OutboxTable,
		del:    "DELETE FROM " + OutboxTable + " WHERE seq IN (" + ph(1, deleteChunk) + ")",
		inbox: "INSERT INTO " + InboxTable + " (consumer, id, handled_at) VALUES (" + ph(1, 3) +
			") ON CONFLICT (consumer, id) DO NOTHING",
		clean: "DELETE FROM " + InboxTable + " WHERE (consumer, id) IN (SELECT consumer, id FROM " + InboxTable +
			" WHERE consumer = " + ph(1, 1) + " AND handled_at < " + ph(2, 1) + " ORDER BY handled_at LIMIT " + ph(3, 1) + ")",
	}, nil
}

// placeholders returns the function that lists n bind parameters from
// the i-th, in dialect's syntax.
func placeholders(d tcc.Dialect) (func(i, n int) string, bool) {
	var one func(i int) string
	switch d.Name() {
	case "sqlite":
		one = func(int) string { return "?" }
	case "postgres":
		one = func(i int) string { return "$" + strconv.Itoa(i) }
	default:
		return nil, false
	}
	return func(i, n int) string {
		p := make([]string, n)
		for j := range p {
			p[j] = one(i + j)
		}
		return strings.Join(p, ", ")
	}, true
}

// DDL returns the statements that create the outbox and inbox tables and
// the inbox's index, if they do not exist, in dialect, for users who
// apply schema changes with their own migration tool. It returns nil for
// an unknown dialect.
func DDL(dialect tcc.Dialect) []string {
	var seq, blob string
	switch dialect.Name() {
	case "sqlite":
		seq, blob = "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"
	case "postgres":
		seq, blob = "BIGSERIAL PRIMARY KEY", "BYTEA"
	default:
		return nil
	}
	return []string{
		"CREATE TABLE IF NOT EXISTS " + OutboxTable + " (" +
			"seq " + seq + ", " +
			"id CHAR(32) NOT NULL UNIQUE, " +
			"topic VARCHAR(128) NOT NULL, " +
			"okey VARCHAR(1024) NOT NULL, " +
			"payload " + blob + " NOT NULL, " +
			"written_at BIGINT NOT NULL)",
		"CREATE TABLE IF NOT EXISTS " + InboxTable + " (" +
			"consumer VARCHAR(64) NOT NULL, " +
			"id CHAR(32) NOT NULL, " +
			"handled_at BIGINT NOT NULL, " +
			"PRIMARY KEY (consumer, id))",
		"CREATE INDEX IF NOT EXISTS " + InboxTable + "_handled ON " + InboxTable + " (consumer, handled_at)",
	}
}

// CreateTables creates the outbox and inbox tables and the inbox's index
// if they do not exist.
func (s *SQLStore) CreateTables(ctx context.Context) error {
	for _, q := range DDL(s.dialect) {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("msg: create tables: %w", err)
		}
	}
	return nil
}

func (s *SQLStore) addRow(ctx context.Context, tx *sql.Tx, r *row) error {
	if tx == nil {
		return fmt.Errorf("%w: nil transaction", ErrInvalid)
	}
	payload := r.Payload
	if payload == nil {
		payload = []byte{} // NOT NULL
	}
	_, err := tx.ExecContext(ctx, s.insert, r.ID, r.Topic, r.Key, payload, r.Written)
	return err
}

func (s *SQLStore) pending(ctx context.Context, limit int) ([]row, error) {
	rs, err := s.db.QueryContext(ctx, s.list, limit)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var rows []row
	for rs.Next() {
		var r row
		if err := rs.Scan(&r.seq, &r.ID, &r.Topic, &r.Key, &r.Payload, &r.Written); err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	return rows, rs.Err()
}

func (s *SQLStore) outboxStats(ctx context.Context) (int, int64, error) {
	var n int
	var first int64
	err := s.db.QueryRowContext(ctx, s.stats).Scan(&n, &first)
	return n, first, err
}

func (s *SQLStore) remove(ctx context.Context, rows []row) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	// Chunks of deleteChunk, the last padded with a sequence no row has.
	for i := 0; i < len(rows); i += deleteChunk {
		args := make([]any, deleteChunk)
		for j := range args {
			args[j] = int64(-1)
			if i+j < len(rows) {
				args[j] = rows[i+j].seq
			}
		}
		if _, err := tx.ExecContext(ctx, s.del, args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (s *SQLStore) handle(ctx context.Context, consumer, id string, at time.Time, _ time.Duration, fn func(tx *sql.Tx) error) (bool, error) {
	opt := s.txOpt
	tx, err := s.db.BeginTx(ctx, &opt)
	if err != nil {
		return false, err
	}
	// Rolls back on an error and on a panic in fn, which would otherwise
	// hold the connection (and SQLite's write lock); a no-op after Commit.
	defer func() { _ = tx.Rollback() }()
	// A concurrent handler of the same message waits here on the primary
	// key until the first transaction ends, then finds its row.
	res, err := tx.ExecContext(ctx, s.inbox, consumer, id, at.UnixNano())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	if n == 0 {
		return true, nil
	}
	if err := fn(tx); err != nil {
		return false, err
	}
	return false, tx.Commit()
}

func (s *SQLStore) cleanInbox(ctx context.Context, consumer string, cutoff time.Time, limit int) (int, error) {
	res, err := s.db.ExecContext(ctx, s.clean, consumer, cutoff.UnixNano(), limit)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
