package bank

import (
	"context"
	"database/sql"
	"errors"

	bankv1 "github.com/concordrpc/concord/examples/bank/gen/bank/v1"
	"github.com/concordrpc/concord/tcc"
)

// NewSavings returns the savings service, with its accounts in db's table
// savings_accounts (created if missing), written through the barrier's
// transaction (tcc.SQLTx). The SQL is SQLite's.
func NewSavings(ctx context.Context, db *sql.DB) (*Accounts, error) {
	_, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS savings_accounts (
		name TEXT PRIMARY KEY,
		available INTEGER NOT NULL,
		reserved INTEGER NOT NULL,
		incoming INTEGER NOT NULL)`)
	if err != nil {
		return nil, err
	}
	return &Accounts{l: sqlLedger{db}}, nil
}

type sqlLedger struct{ db *sql.DB }

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
	err = tx.QueryRowContext(ctx, `SELECT available, reserved, incoming FROM savings_accounts WHERE name = ?`, account).
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
	_, err = tx.ExecContext(ctx, `UPDATE savings_accounts SET available = ?, reserved = ?, incoming = ? WHERE name = ?`,
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
		VALUES (?, ?, 0, 0) ON CONFLICT (name) DO NOTHING`, account, available)
	return err
}
