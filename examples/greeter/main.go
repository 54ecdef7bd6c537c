// Command greeter is Concord's main example: a greeter service in one
// binary. `make run` builds and starts it.
//
//	greeter [-addr 127.0.0.1:8080]
//
// It serves Connect, gRPC and gRPC-Web on one port, with health, reflection
// and protovalidate validation, and drains gracefully on SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/rpc"
)

func main() {
	addr := flag.String("addr", envOr("GREETER_ADDR", "127.0.0.1:8080"), "address to serve on (env GREETER_ADDR)")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, *addr, logger); err != nil {
		fmt.Fprintln(os.Stderr, "greeter:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr string, logger *slog.Logger) error {
	srv := rpc.NewServer(rpc.WithLogger(logger))
	greeterv1concord.RegisterGreeterService(srv, greeter.Service{})
	err := srv.ListenAndServe(ctx, addr)
	if errors.Is(err, rpc.ErrDrainTimeout) {
		logger.Warn("greeter: some calls were cut off at shutdown")
		return nil
	}
	return err
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
