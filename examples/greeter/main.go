package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/rpc"
)

func main() {
	addr := flag.String("addr", "", "address to serve RPCs on (default: all interfaces at $PORT when PORT is set, else "+concord.DefaultAddr+")")
	advertise := flag.String("advertise", os.Getenv("CONCORD_ADVERTISE_URL"), "base URL other instances reach this one at (env CONCORD_ADVERTISE_URL; default: http:// and the listen address, an unspecified IP replaced by the host name)")
	admin := flag.String("admin", concord.DefaultAdminAddr, "address of the admin listener (concord status); keep it on loopback")
	data := flag.String("data", coord.DefaultDataDir, "data directory of the embedded node")
	name := flag.String("name", "concord", "node name, stable and unique in a cluster")
	cluster := flag.String("cluster", "", "cluster mode: this node's route address, host:port")
	peers := flag.String("peers", "", "cluster mode: route addresses of all nodes, comma-separated")
	natsURL := flag.String("nats", os.Getenv("CONCORD_NATS_URL"), "client mode: URLs of an existing NATS cluster, comma-separated (env CONCORD_NATS_URL)")
	logFormat := flag.String("log-format", cmp.Or(os.Getenv("CONCORD_LOG_FORMAT"), "text"), "log format: text or json, one object per line (env CONCORD_LOG_FORMAT)")
	drainTimeout := flag.Duration("drain-timeout", rpc.DefaultDrainTimeout, "how long a stopping greeter waits for calls in flight; keep the whole drain within the platform's grace period (README, Deploy)")
	flag.Parse()
	logger, err := newLogger(os.Stderr, *logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "greeter:", err)
		os.Exit(2)
	}

	// Secrets come from the environment, not flags (which ps shows).
	coordOpts := []coord.Option{coord.WithName(*name)}
	switch {
	case *natsURL != "":
		coordOpts = append(coordOpts, coord.WithClient(strings.Split(*natsURL, ","), coord.ClientAuth{
			Username: cmp.Or(os.Getenv("CONCORD_NATS_USER"), "concord"), Password: os.Getenv("CONCORD_NATS_PASSWORD"),
		}))
	case *cluster != "":
		coordOpts = append(coordOpts, coord.WithCluster(coord.Cluster{
			Listen: *cluster, Peers: strings.Split(*peers, ","), Password: os.Getenv("CONCORD_ROUTE_PASSWORD"),
		}))
	}
	opts := []concord.Option{
		concord.WithAdminAddr(*admin),
		concord.WithDataDir(*data),
		concord.WithLogger(logger),
		concord.WithSignalHandling(),
		concord.WithCoordOptions(coordOpts...),
		concord.WithServerOptions(rpc.WithDrain(0, *drainTimeout)),
	}
	if *addr != "" {
		opts = append(opts, concord.WithAddr(*addr))
	}
	if *advertise != "" {
		opts = append(opts, concord.WithAdvertiseURL(*advertise))
	}
	app := concord.New(opts...)
	// The greeting template is the live config "greeter": change it with
	// `concord config set greeter '{"template":"Hi, {name}!"}'`.
	template := concord.Config(app, "greeter", &greeterv1.GreeterConfig{Template: greeter.DefaultTemplate})
	greeterv1concord.RegisterGreeterService(app, greeter.Service{Config: template})
	// WelcomeService calls GreeterService by its discovery name: through the
	// registry, balanced over every ready greeter instance.
	greeterv1concord.RegisterWelcomeService(app, greeter.Welcome{Greeter: greeterv1concord.NewGreeterServiceClient(app)})
	err = app.Run(context.Background())
	if errors.Is(err, rpc.ErrDrainTimeout) {
		logger.Warn("greeter: some calls were cut off at shutdown")
		err = nil
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "greeter:", err)
		os.Exit(1)
	}
}

// newLogger returns the greeter's logger, at level Info: format "text"
// writes logfmt-like lines, "json" one JSON object per line (what Cloud
// Logging and most Kubernetes log pipelines parse into fields).
func newLogger(w io.Writer, format string) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}
