package lock_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/coord/lock"
)

func ExampleMutex() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir, _ := os.MkdirTemp("", "lock-example")
	defer os.RemoveAll(dir)
	node, err := coord.Open(ctx, coord.WithDataDir(dir+"/node"), coord.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	defer node.Close()
	store, err := localstore.Open(dir + "/local")
	if err != nil {
		panic(err)
	}
	defer store.Close()
	guard := lock.NewGuard(store, lock.FromNode(node))

	mu := lock.NewMutex(lock.FromNode(node), "orders/42", lock.WithTTL(10*time.Second))
	token, err := mu.Lock(ctx)
	if err != nil {
		panic(err)
	}
	// Write under the lock, fenced by its token.
	err = guard.Update(ctx, "orders/42", token, func(tx *localstore.Tx) error {
		return tx.Set([]byte("orders/42/status"), []byte("shipped"))
	})
	fmt.Println("write:", err)
	fmt.Println("unlock:", mu.Unlock(ctx))
	// A write with an older token is refused once a newer one was seen.
	next, err := mu.Lock(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("newer:", next > token, guard.Check(ctx, "orders/42", next))
	fmt.Println("stale:", errors.Is(guard.Check(ctx, "orders/42", token), lock.ErrStaleToken))
	fmt.Println("unlock:", mu.Unlock(ctx))
	// Output:
	// write: <nil>
	// unlock: <nil>
	// newer: true <nil>
	// stale: true
	// unlock: <nil>
}

// Check Valid before each step under the lock: after a pause past the
// lease's deadline, Done stays open until the keepalive runs again, while
// Valid fails at once.
func ExampleMutex_Valid() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir, _ := os.MkdirTemp("", "valid-example")
	defer os.RemoveAll(dir)
	node, err := coord.Open(ctx, coord.WithDataDir(dir), coord.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	defer node.Close()

	mu := lock.NewMutex(lock.FromNode(node), "reports/daily", lock.WithTTL(5*time.Second))
	if _, err := mu.Lock(ctx); err != nil {
		panic(err)
	}
	for _, step := range []string{"collect", "render", "publish"} {
		if err := mu.Valid(); err != nil {
			fmt.Println("stopping before", step+":", err) // errors.Is(err, lock.ErrLeaseLost)
			return
		}
		fmt.Println(step)
	}
	fmt.Println("unlock:", mu.Unlock(ctx))
	fmt.Println("held after Unlock:", !errors.Is(mu.Valid(), lock.ErrNotHeld))
	// Output:
	// collect
	// render
	// publish
	// unlock: <nil>
	// held after Unlock: false
}

func ExampleElection() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir, _ := os.MkdirTemp("", "election-example")
	defer os.RemoveAll(dir)
	node, err := coord.Open(ctx, coord.WithDataDir(dir), coord.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	defer node.Close()

	e := lock.NewElection(lock.FromNode(node), "scheduler", lock.WithTTL(5*time.Second))
	if _, err := e.Campaign(ctx, "10.0.0.7:8080"); err != nil {
		panic(err)
	}
	leader, _ := e.Leader(ctx)
	fmt.Println("leader:", leader.Value)
	fmt.Println("resign:", e.Resign(ctx))
	// Output:
	// leader: 10.0.0.7:8080
	// resign: <nil>
}

// What a status page shows of the locks: the held ones with their holder
// and fencing token (ReadStatus makes one direct read per bucket, cheap to
// poll).
func ExampleReadStatus() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir, _ := os.MkdirTemp("", "lock-example")
	defer os.RemoveAll(dir)
	node, err := coord.Open(ctx, coord.WithDataDir(dir), coord.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	defer node.Close()
	mu := lock.NewMutex(lock.FromNode(node), "reports/daily", lock.WithHolder("worker-1"))
	token, err := mu.Lock(ctx)
	if err != nil {
		panic(err)
	}
	st := lock.ReadStatus(ctx, node, time.Second)
	for _, l := range st.Held {
		fmt.Println(l.Name, l.Holder, l.Token == token)
	}
	fmt.Println("unlock:", mu.Unlock(ctx))
	// Output:
	// reports/daily worker-1 true
	// unlock: <nil>
}
