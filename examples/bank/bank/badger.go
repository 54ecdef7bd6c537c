package bank

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/concordrpc/concord/coord/localstore"
	bankv1 "github.com/concordrpc/concord/examples/bank/gen/bank/v1"
	"github.com/concordrpc/concord/tcc"
)

const badgerPrefix = "bank/checking/"

// NewChecking returns the checking service, with its accounts in the
// local store that src hands out (an App), written through the barrier's
// transaction (tcc.BadgerTx). If ev is not nil, each Confirm also writes
// a TransferCompleted event to ev's outbox in that transaction.
func NewChecking(src tcc.LocalStore, ev *Events) *Accounts {
	a := &Accounts{l: badgerLedger{src}}
	if ev != nil {
		a.confirmed = ev.announce
	}
	return a
}

type badgerLedger struct{ src tcc.LocalStore }

func (l badgerLedger) tx(ctx context.Context) (*localstore.Tx, error) {
	tx := tcc.BadgerTx(ctx)
	if tx == nil {
		return nil, errors.New("bank: checking phase outside a TCC barrier")
	}
	return tx, nil
}

func (l badgerLedger) get(ctx context.Context, account string) (balance, bool, error) {
	tx, err := l.tx(ctx)
	if err != nil {
		return balance{}, false, err
	}
	v, err := tx.Get([]byte(badgerPrefix + account))
	if errors.Is(err, localstore.ErrNotFound) {
		return balance{}, false, nil
	}
	if err != nil {
		return balance{}, false, err
	}
	var b balance
	if err := json.Unmarshal(v, &b); err != nil {
		return balance{}, false, fmt.Errorf("bank: account %s: %w", account, err)
	}
	return b, true, nil
}

func (l badgerLedger) put(ctx context.Context, account string, b balance) error {
	tx, err := l.tx(ctx)
	if err != nil {
		return err
	}
	v, _ := json.Marshal(b)
	return tx.Set([]byte(badgerPrefix+account), v)
}

func (l badgerLedger) list(ctx context.Context) ([]*bankv1.Balance, error) {
	store, err := l.src.Local(ctx)
	if err != nil {
		return nil, err
	}
	var out []*bankv1.Balance
	err = store.Scan([]byte(badgerPrefix), func(key, value []byte) error {
		var b balance
		if err := json.Unmarshal(value, &b); err != nil {
			return err
		}
		out = append(out, &bankv1.Balance{Account: strings.TrimPrefix(string(key), badgerPrefix),
			Available: b.Available, Reserved: b.Reserved, Incoming: b.Incoming})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Account < out[j].Account })
	return out, err
}

func (l badgerLedger) open(ctx context.Context, account string, available int64) error {
	store, err := l.src.Local(ctx)
	if err != nil {
		return err
	}
	return store.Update(func(tx *localstore.Tx) error {
		if _, err := tx.Get([]byte(badgerPrefix + account)); !errors.Is(err, localstore.ErrNotFound) {
			return err // exists, or a failure
		}
		v, _ := json.Marshal(balance{Available: available})
		return tx.Set([]byte(badgerPrefix+account), v)
	})
}
