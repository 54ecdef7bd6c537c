package msgstatus_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/msg"
	"github.com/concordrpc/concord/msg/msgstatus"
)

// A status read after a consumer subscribed and a relay started: the
// consumer's partitions, no dead letters, and this process's outbox.
func ExampleRead() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir, _ := os.MkdirTemp("", "msgstatus-example")
	defer os.RemoveAll(dir)
	node, err := coord.Open(ctx, coord.WithDataDir(dir+"/node"), coord.WithName("n1"), coord.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	defer node.Close()
	db, err := localstore.Open(dir + "/local")
	if err != nil {
		panic(err)
	}
	defer db.Close()
	store := msg.Badger(db)
	relay := msg.StartRelay(node, msg.NewOutbox(store))
	defer relay.Close()
	sub, err := msg.Subscribe(ctx, node, store, "billing", "orders.placed",
		func(context.Context, *localstore.Tx, *msg.Delivery) error { return nil })
	if err != nil {
		panic(err)
	}
	defer sub.Close()

	st := msgstatus.Read(ctx, node, 5*time.Second)
	for _, c := range st.Consumers {
		fmt.Printf("consumer %s on %s: %d partitions, %d pending\n", c.Name, c.Topic, c.Partitions, c.Pending)
	}
	fmt.Println("dead letters:", st.DeadLetters)
	for _, o := range st.Outboxes {
		fmt.Printf("outbox on %s (%s): %d rows\n", o.Instance, o.Store, o.Rows)
	}
	// Output:
	// consumer billing on orders.placed: 17 partitions, 0 pending
	// dead letters: 0
	// outbox on n1 (badger): 0 rows
}
