package msg_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/msg"
)

// A producer writes an order and announces it in one local transaction;
// a consumer applies the event once, in a transaction of its own.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "msg-example")
	defer os.RemoveAll(dir)
	node, err := coord.Open(ctx, coord.WithDataDir(filepath.Join(dir, "node")), coord.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	db, err := localstore.Open(filepath.Join(dir, "local"), localstore.WithGCInterval(0))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	store := msg.Badger(db)

	// Producer: the business write and the outbox row commit together.
	outbox := msg.NewOutbox(store)
	relay := msg.StartRelay(node, outbox)
	defer relay.Close()
	err = db.Update(func(tx *localstore.Tx) error {
		if err := tx.Set([]byte("order/42"), []byte("placed")); err != nil {
			return err
		}
		_, err := outbox.Add(ctx, tx, msg.Message{Topic: "orders.placed", Key: "order-42", Payload: []byte("order 42")})
		return err
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	outbox.Notify()

	// Consumer: the handler's writes commit with the inbox row.
	handled := make(chan string, 1)
	sub, err := msg.Subscribe(ctx, node, store, "billing", "orders.placed",
		func(_ context.Context, tx *localstore.Tx, d *msg.Delivery) error {
			if err := tx.Set([]byte("invoice/"+d.Key), d.Payload); err != nil {
				return err
			}
			handled <- fmt.Sprintf("%s %s: %s (delivery %d)", d.Topic, d.Key, d.Payload, d.Deliveries)
			return nil
		})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sub.Close()
	fmt.Println(<-handled)
	// Output: orders.placed order-42: order 42 (delivery 1)
}
