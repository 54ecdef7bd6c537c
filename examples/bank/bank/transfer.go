package bank

import (
	"context"
	"fmt"

	"connectrpc.com/connect/v2"

	bankv1 "github.com/concordrpc/concord/examples/bank/gen/bank/v1"
	"github.com/concordrpc/concord/examples/bank/gen/bank/v1/bankv1concord"
	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/tcc"
)

// Coordinator runs TCC transactions; *concord.App is one.
type Coordinator interface {
	TCC(ctx context.Context, fn func(tx *tcc.Tx) error, opts ...tcc.TxOption) (tcc.Result, error)
}

// Transfer is the transfer service.
type Transfer struct{ TCC Coordinator }

// Transfer moves the amount with two branches, a debit on the from side
// and a credit on the other. Its error is the transaction's: the
// refusing Try's (failed_precondition for insufficient funds, not_found
// for a missing account) when it was cancelled.
func (t Transfer) Transfer(ctx context.Context, req *bankv1.TransferRequest) (*bankv1.TransferResponse, error) {
	debit := &bankv1.ChangeRequest{Account: req.GetFromAccount(), Amount: -req.GetAmount(), Counterparty: req.GetToAccount()}
	credit := &bankv1.ChangeRequest{Account: req.GetToAccount(), Amount: req.GetAmount(), Counterparty: req.GetFromAccount()}
	var from, to func(*bankv1.ChangeRequest) (rpc.TCCBranch, error)
	switch req.GetFrom() {
	case bankv1.Side_SIDE_CHECKING:
		from, to = bankv1concord.CheckingServiceChangeBranch, bankv1concord.SavingsServiceChangeBranch
	case bankv1.Side_SIDE_SAVINGS:
		from, to = bankv1concord.SavingsServiceChangeBranch, bankv1concord.CheckingServiceChangeBranch
	default:
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Sprintf("unknown side %v", req.GetFrom()))
	}
	res, err := t.TCC.TCC(ctx, func(tx *tcc.Tx) error {
		d, err := from(debit)
		if err != nil {
			return err
		}
		c, err := to(credit)
		if err != nil {
			return err
		}
		tx.Try(d)
		tx.Try(c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &bankv1.TransferResponse{TransactionId: res.ID}, nil
}
