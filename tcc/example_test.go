package tcc_test

import (
	"context"
	"fmt"
	"os"

	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/tcc"
)

// A Cancel that arrives before its Try succeeds without running the
// compensation, and the late Try is refused.
func ExampleBadgerBarrier() {
	dir, err := os.MkdirTemp("", "tcc-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	store, err := localstore.Open(dir, localstore.WithGCInterval(0))
	if err != nil {
		panic(err)
	}
	defer store.Close()

	b := tcc.NewBadgerBarrier(store)
	k := tcc.BranchKey{TxID: "order-42", BranchID: "debit"}
	reserve := func(ctx context.Context) error {
		return tcc.BadgerTx(ctx).Set([]byte("reserved/order-42"), []byte("100"))
	}
	release := func(ctx context.Context) error {
		return tcc.BadgerTx(ctx).Delete([]byte("reserved/order-42"))
	}

	out, err := b.Run(context.Background(), k, tcc.PhaseCancel, release)
	fmt.Println(out == tcc.OutcomeSkipped, err)
	out, err = b.Run(context.Background(), k, tcc.PhaseTry, reserve)
	fmt.Println(out == tcc.OutcomeRefused, err)
	// Output:
	// true <nil>
	// true failed_precondition: tcc: try after cancel (transaction order-42, branch debit)
}
