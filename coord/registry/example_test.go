package registry_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/registry"
)

func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "registry-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	logger := slog.New(slog.DiscardHandler)
	node, err := coord.Open(ctx, coord.WithDataDir(dir), coord.WithLogger(logger))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()

	// A server registers itself once it serves, and deregisters first on
	// shutdown.
	reg, err := registry.Register(ctx, node, registry.Registration{
		Service: "greeter.v1.GreeterService",
		ID:      "greeter-1",
		BaseURL: "http://127.0.0.1:8080",
		Ready:   true,
	}, registry.WithLogger(logger))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Close()

	// A client resolves the service by name.
	res := registry.NewResolver(node, registry.ResolverLogger(logger))
	defer res.Close()
	insts, err := res.Resolve(ctx, "greeter.v1.GreeterService")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, in := range insts {
		fmt.Println(in.ID, in.BaseURL)
	}
	if err := reg.Deregister(ctx); err != nil {
		fmt.Println(err)
	}
	// Output: greeter-1 http://127.0.0.1:8080
}
