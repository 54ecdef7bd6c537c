package bank

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	bankv1 "github.com/concordrpc/concord/examples/bank/gen/bank/v1"
	"github.com/concordrpc/concord/tcc"
)

// OpenSQLite opens (creating it if needed) the savings database file
// savings.db in dir for NewSavings and a SQL barrier: immediate
// transactions, WAL with a synced commit, and one connection, so that
// concurrent phases queue in Go's pool instead of in SQLite's busy
// handler, which sleeps.
func OpenSQLite(dir string) (*sql.DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "savings.db")+
		"?_txlock=immediate&_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// NewSavings returns the savings service, with its accounts in db's table
// savings_accounts (created if missing), written through the barrier's
// transaction (tcc.SQLTx). dialect is the barrier's: tcc.SQLite() or
// tcc.PostgreSQL().
//
// The barrier serializes the calls of one branch, not those of different
// transactions that change the same account. Each phase reads the account
// and writes it back, so on PostgreSQL (READ COMMITTED) it reads with
// SELECT ... FOR UPDATE, which holds the row until the phase commits;
// SQLite's immediate transactions already run one at a time.
func NewSavings(ctx context.Context, db *sql.DB, dialect tcc.Dialect) (*Accounts, error) {
	_, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS savings_accounts (
		name TEXT PRIMARY KEY,
		available BIGINT NOT NULL,
		reserved BIGINT NOT NULL,
		incoming BIGINT NOT NULL)`)
	if err != nil {
		return nil, err
	}
	l := sqlLedger{db: db}
	if dialect.Name() == tcc.PostgreSQL().Name() {
		l.lock = " FOR UPDATE"
	}
	return &Accounts{l: l}, nil
}

type sqlLedger struct {
	db   *sql.DB
	lock string // appended to the phase's SELECT
}

func (l sqlLedger) tx(ctx context.Context) (*sql.Tx, error) {
	tx := tcc.SQLTx(ctx)
	if tx == nil {
		return nil, errors.New("bank: savings phase outside a TCC barrier")
	}
	return tx, nil
}

func (l sqlLedger) get(ctx context.Context, account string) (balance, bool, error) {
	tx, err := l.tx(ctx)
	if err != nil {
		return balance{}, false, err
	}
	var b balance
	err = tx.QueryRowContext(ctx, `SELECT available, reserved, incoming FROM savings_accounts WHERE name = $1`+l.lock, account).
		Scan(&b.Available, &b.Reserved, &b.Incoming)
	if errors.Is(err, sql.ErrNoRows) {
		return balance{}, false, nil
	}
	return b, err == nil, err
}

func (l sqlLedger) put(ctx context.Context, account string, b balance) error {
	tx, err := l.tx(ctx)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE savings_accounts SET available = $1, reserved = $2, incoming = $3 WHERE name = $4`,
		b.Available, b.Reserved, b.Incoming, account)
	return err
}

func (l sqlLedger) list(ctx context.Context) ([]*bankv1.Balance, error) {
	rows, err := l.db.QueryContext(ctx, `SELECT name, available, reserved, incoming FROM savings_accounts ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*bankv1.Balance
	for rows.Next() {
		b := new(bankv1.Balance)
		if err := rows.Scan(&b.Account, &b.Available, &b.Reserved, &b.Incoming); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

func (l sqlLedger) open(ctx context.Context, account string, available int64) error {
	_, err := l.db.ExecContext(ctx, `INSERT INTO savings_accounts (name, available, reserved, incoming)
		VALUES ($1, $2, 0, 0) ON CONFLICT (name) DO NOTHING`, account, available)
	return err
}
