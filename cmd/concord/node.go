package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/registry"
)

// nodeCmd runs a standalone coordination node until ctx ends.
func nodeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", coord.DefaultDataDir, "data directory")
	name := fs.String("name", "concord", "node name, stable and unique in a cluster")
	listen := fs.String("listen", "127.0.0.1:4222", "address NATS clients (apps in client mode) connect to")
	user := fs.String("user", cmp.Or(os.Getenv("CONCORD_NATS_USER"), "concord"), "username NATS clients must present (env CONCORD_NATS_USER)")
	password := fs.String("password", os.Getenv("CONCORD_NATS_PASSWORD"), "password NATS clients must present; required (env CONCORD_NATS_PASSWORD)")
	cluster := fs.String("cluster", "", "cluster mode: this node's route address, host:port")
	peers := fs.String("peers", "", "cluster mode: route addresses of all nodes, comma-separated")
	routeUser := fs.String("route-user", "", "cluster mode: username routes must present (default concord)")
	routePassword := fs.String("route-password", os.Getenv("CONCORD_ROUTE_PASSWORD"), "cluster mode: password routes must present, the same on every node; required (env CONCORD_ROUTE_PASSWORD)")
	httpAddr := fs.String("http", "127.0.0.1:8222", "address of the status endpoint (GET /concord/status); empty disables it")
	logLevel := fs.String("log-level", "warn", "lowest level of NATS logs: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() != 0 {
		return usageError{"node takes flags only"}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError{fmt.Sprintf("-log-level: %v", err)}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts := []coord.Option{
		coord.WithDataDir(*data), coord.WithName(*name), coord.WithListen(*listen),
		coord.WithLogger(logger), coord.WithLogLevel(level),
	}
	if *password != "" {
		opts = append(opts, coord.WithListenAuth(*user, *password))
	}
	if *cluster != "" {
		opts = append(opts, coord.WithCluster(coord.Cluster{
			Listen: *cluster, Peers: splitList(*peers), Username: *routeUser, Password: *routePassword,
		}))
	}
	node, err := coord.Open(ctx, opts...)
	if err != nil {
		return err
	}
	defer node.Close()

	var status string
	if *httpAddr != "" {
		ln, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			return fmt.Errorf("status endpoint: %w", err)
		}
		mux := http.NewServeMux()
		resolver := registry.NewResolver(node)
		defer resolver.Close()
		mux.Handle("GET /concord/status", registry.StatusHandler(node, resolver))
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = hs.Serve(ln) }()
		defer hs.Close()
		status = " status=http://" + ln.Addr().String() + "/concord/status"
	}
	fmt.Fprintf(stdout, "concord node %s ready: mode=%s nats=%s replicas=%d%s\n",
		node.Name(), node.Mode(), node.ClientURL(), node.Replicas(), status)
	<-ctx.Done()
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
