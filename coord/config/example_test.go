package config_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/config"
	"github.com/concordrpc/concord/coord/localstore"
	v1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1"
)

func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "config-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	node, err := coord.Open(ctx, coord.WithDataDir(dir+"/node"), coord.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	local, err := localstore.Open(dir+"/local", localstore.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer local.Close()

	// A reader: a typed handle with a default, kept in the local store.
	greeting := config.New(config.FromNode(node), config.FromStore(local), "greeting", &v1.EchoRequest{Text: "Hello"})
	defer greeting.Close()
	if err := greeting.Wait(ctx); err != nil {
		log.Fatal(err)
	}
	updates := greeting.Watch(ctx)
	fmt.Println("current:", (<-updates).Value.GetText())

	// A writer: validated, compare-and-set writes.
	store := config.NewStore(node)
	v1st, err := store.Set(ctx, "greeting", &v1.EchoRequest{Text: "Bonjour"}, 0, "alice")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("watched:", (<-updates).Value.GetText())
	_, err = store.Set(ctx, "greeting", &v1.EchoRequest{Text: ""}, v1st, "bob")
	fmt.Println("empty text refused:", err != nil)
	_, err = store.Set(ctx, "greeting", &v1.EchoRequest{Text: "Hola"}, 0, "bob")
	fmt.Println("stale write refused:", err != nil)
	if _, err := store.Set(ctx, "greeting", &v1.EchoRequest{Text: "Hola"}, v1st, "bob"); err != nil {
		log.Fatal(err)
	}
	fmt.Println("watched:", (<-updates).Value.GetText())
	fmt.Println("get:", greeting.Get().GetText())
	// Output:
	// current: Hello
	// watched: Bonjour
	// empty text refused: true
	// stale write refused: true
	// watched: Hola
	// get: Hola
}
