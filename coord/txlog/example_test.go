package txlog_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/txlog"
)

// A transaction's life in the log, as package tcc's coordinator writes it:
// begun with its branches, decided once (a second decision from the same
// record loses), and finished, after which it is gone from the log.
func ExampleLog() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir, _ := os.MkdirTemp("", "txlog-example")
	defer os.RemoveAll(dir)
	node, err := coord.Open(ctx, coord.WithDataDir(dir), coord.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	defer node.Close()
	log := txlog.Open(node)

	rec := &txlog.Record{
		ID: txlog.NewID(), State: txlog.StateTrying, Created: time.Now(), Deadline: time.Now().Add(30 * time.Second),
		Branches: []txlog.Branch{{
			ID: "b1", Service: "checking",
			Try: "/bank.v1.CheckingService/Change", Confirm: "/bank.v1.CheckingService/ConfirmChange", Cancel: "/bank.v1.CheckingService/CancelChange",
		}},
	}
	fmt.Println("begin:", log.Begin(ctx, rec))

	commit, cancelled := rec.Clone(), rec.Clone()
	commit.State, cancelled.State = txlog.StateConfirming, txlog.StateCancelling
	fmt.Println("decide commit:", log.Update(ctx, commit))
	fmt.Println("decide cancel:", errors.Is(log.Update(ctx, cancelled), txlog.ErrConflict))

	commit.State = txlog.StateConfirmed
	fmt.Println("finish:", log.Finish(ctx, commit, 0))
	_, err = log.Get(ctx, rec.ID)
	fmt.Println("after finish:", errors.Is(err, txlog.ErrNotFound))
	// Output:
	// begin: <nil>
	// decide commit: <nil>
	// decide cancel: true
	// finish: <nil>
	// after finish: true
}
