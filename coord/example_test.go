package coord_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/concordrpc/concord/coord"
)

// Make sure the connection works after the process may have been frozen
// (a function thawed for its next invocation) before relying on it.
func ExampleNode_Ping() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir, _ := os.MkdirTemp("", "coord-example")
	defer os.RemoveAll(dir)
	node, err := coord.Open(ctx, coord.WithDataDir(dir), coord.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	defer pcancel()
	fmt.Println("ping:", node.Ping(pctx))
	fmt.Println("mode:", coord.ModeOf(coord.WithClient([]string{"nats://127.0.0.1:4222"}, coord.ClientAuth{})))
	_ = node.Close()
	fmt.Println("after close:", node.Ping(ctx))
	// Output:
	// ping: <nil>
	// mode: client
	// after close: coord: node closed
}
