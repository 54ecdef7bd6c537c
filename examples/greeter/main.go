package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
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
	addr := flag.String("addr", concord.DefaultAddr, "address to serve RPCs on")
	admin := flag.String("admin", concord.DefaultAdminAddr, "address of the admin listener (concord status); keep it on loopback")
	data := flag.String("data", coord.DefaultDataDir, "data directory of the embedded node")
	name := flag.String("name", "concord", "node name, stable and unique in a cluster")
	cluster := flag.String("cluster", "", "cluster mode: this node's route address, host:port")
	peers := flag.String("peers", "", "cluster mode: route addresses of all nodes, comma-separated")
	natsURL := flag.String("nats", "", "client mode: URLs of an existing NATS cluster, comma-separated")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

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
	app := concord.New(
		concord.WithAddr(*addr),
		concord.WithAdminAddr(*admin),
		concord.WithDataDir(*data),
		concord.WithLogger(logger),
		concord.WithSignalHandling(),
		concord.WithCoordOptions(coordOpts...),
	)
	// The greeting template is the live config "greeter": change it with
	// `concord config set greeter '{"template":"Hi, {name}!"}'`.
	template := concord.Config(app, "greeter", &greeterv1.GreeterConfig{Template: greeter.DefaultTemplate})
	greeterv1concord.RegisterGreeterService(app, greeter.Service{Config: template})
	// WelcomeService calls GreeterService by its discovery name: through the
	// registry, balanced over every ready greeter instance.
	greeterv1concord.RegisterWelcomeService(app, greeter.Welcome{Greeter: greeterv1concord.NewGreeterServiceClient(app)})
	err := app.Run(context.Background())
	if errors.Is(err, rpc.ErrDrainTimeout) {
		logger.Warn("greeter: some calls were cut off at shutdown")
		err = nil
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "greeter:", err)
		os.Exit(1)
	}
}
