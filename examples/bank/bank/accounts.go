package bank

import (
	"context"
	"fmt"

	"connectrpc.com/connect/v2"

	bankv1 "github.com/concordrpc/concord/examples/bank/gen/bank/v1"
)

// balance is one account's state.
type balance struct {
	Available int64 `json:"available"`
	Reserved  int64 `json:"reserved"`
	Incoming  int64 `json:"incoming"`
}

// ledger keeps balances. get and put run inside the barrier's local
// transaction found in ctx; list and open run on their own.
type ledger interface {
	get(ctx context.Context, account string) (balance, bool, error)
	put(ctx context.Context, account string, b balance) error
	list(ctx context.Context) ([]*bankv1.Balance, error)
	open(ctx context.Context, account string, available int64) error
}

// Accounts is an account service over a ledger: CheckingService (Badger)
// or SavingsService (SQL), whose handler interfaces are the same.
type Accounts struct {
	l ledger
	// confirmed, if set, runs after a Confirm's balance change, in the
	// same local transaction: checking announces the transfer there.
	confirmed func(ctx context.Context, req *bankv1.ChangeRequest) error
}

// Open creates account with an available balance, if it does not exist.
func (a *Accounts) Open(ctx context.Context, account string, available int64) error {
	return a.l.open(ctx, account, available)
}

// Change is the Try phase: see the package doc.
func (a *Accounts) Change(ctx context.Context, req *bankv1.ChangeRequest) (*bankv1.ChangeResponse, error) {
	return a.apply(ctx, req, func(b *balance, amount int64) error {
		if amount < 0 {
			if b.Available < -amount {
				return connect.NewError(connect.CodeFailedPrecondition,
					fmt.Sprintf("insufficient funds in %s: %d available, %d needed", req.GetAccount(), b.Available, -amount))
			}
			b.Available += amount
			b.Reserved -= amount
			return nil
		}
		b.Incoming += amount
		return nil
	})
}

// ConfirmChange is the Confirm phase.
func (a *Accounts) ConfirmChange(ctx context.Context, req *bankv1.ChangeRequest) (*bankv1.ChangeResponse, error) {
	res, err := a.apply(ctx, req, func(b *balance, amount int64) error {
		if amount < 0 {
			b.Reserved += amount
		} else {
			b.Incoming -= amount
			b.Available += amount
		}
		return nil
	})
	if err != nil || a.confirmed == nil {
		return res, err
	}
	if err := a.confirmed(ctx, req); err != nil {
		return nil, err
	}
	return res, nil
}

// CancelChange is the Cancel phase.
func (a *Accounts) CancelChange(ctx context.Context, req *bankv1.ChangeRequest) (*bankv1.ChangeResponse, error) {
	return a.apply(ctx, req, func(b *balance, amount int64) error {
		if amount < 0 {
			b.Reserved += amount
			b.Available -= amount
		} else {
			b.Incoming -= amount
		}
		return nil
	})
}

// ListBalances returns every account's balances.
func (a *Accounts) ListBalances(ctx context.Context, _ *bankv1.ListBalancesRequest) (*bankv1.ListBalancesResponse, error) {
	accounts, err := a.l.list(ctx)
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, err.Error()).WithCause(err)
	}
	return &bankv1.ListBalancesResponse{Accounts: accounts}, nil
}

// apply reads the account in the phase's local transaction, changes it
// and writes it back. A balance that would go negative is a bug (the
// barrier's guarantees make it impossible) and fails the phase.
func (a *Accounts) apply(ctx context.Context, req *bankv1.ChangeRequest, change func(b *balance, amount int64) error) (*bankv1.ChangeResponse, error) {
	b, ok, err := a.l.get(ctx, req.GetAccount())
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Sprintf("no account %s", req.GetAccount()))
	}
	if err := change(&b, req.GetAmount()); err != nil {
		return nil, err
	}
	if b.Available < 0 || b.Reserved < 0 || b.Incoming < 0 {
		return nil, connect.NewError(connect.CodeInternal, fmt.Sprintf("account %s would have a negative balance: %+v", req.GetAccount(), b))
	}
	if err := a.l.put(ctx, req.GetAccount(), b); err != nil {
		return nil, err
	}
	return &bankv1.ChangeResponse{}, nil
}
