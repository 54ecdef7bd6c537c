package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/concordrpc/concord/internal/protodeps"
	"github.com/concordrpc/concord/rpc"
)

const usage = `concord is the Concord command-line tool.

Usage:

	concord new DIR [--module PATH] [--service NAME] [--replace CHECKOUT]
		Write a new Go module into DIR (new or empty) that serves one
		annotated service with an embedded coordination node, and generate
		its code, so that "make run" serves at once. Defaults: module
		example.com/<base name of DIR>, service from DIR (hello gives
		HelloService). --replace builds against a Concord checkout instead
		of the version this concord was built from.
	concord proto-deps [-skip-concord] DIR
		Write buf/validate/validate.proto (from the checksum-verified Go
		module github.com/bufbuild/protovalidate) and
		concord/v1/options.proto into the include directory DIR.
	concord node [flags]
		Run a standalone coordination node (JetStream), for apps in client
		mode and for tests; -cluster and -peers join nodes into a cluster.
		Run "concord node -h" for the flags.
	concord status [-addr http://127.0.0.1:9080] [-json] [-watch [-interval 2s]] [SECTION]
		Print the coordination status of a running app (its admin
		address, loopback by default) or node (its -http address): nodes, meta leader, and buckets with
		their replica counts; services; locks held (holder, fencing
		token, time left) and elections' leaders; the app's rate limits
		(admitted, refused, saturation: the refused share of the last
		10-20s) and the circuit breakers of its upstream instances; TCC
		transactions; message
		consumers with their pending, in-flight and redelivered counts,
		the dead-letter count, and the outboxes relayed by that process
		(depth and oldest row's age; each instance shows its own).
		SECTION prints one part: nodes, services, locks, limits,
		breakers, transactions or messages (with -json, only its JSON).
		-watch redraws every -interval until Ctrl-C (-count N stops
		after N reads; with -json, one document per read).
	concord lock hold [-addr URL] [-creds FILE] NAME [-for 60s]
	concord lock release [-addr URL] [-creds FILE] NAME
		Have a running app take its lock NAME and hold it for -for (1s to
		10m), as an operator's handle on a resource; hold returns once
		the lock is held and prints its fencing token: the app keeps it
		(and refreshes its lease) until -for has passed, release is
		called, or the app stops. A lock held elsewhere is refused at
		once. Sends an admin credential like concord config.
	concord dead-letters [flags] list [-from SEQ] [-limit N] [-json]
	concord dead-letters [flags] replay SEQ|-all
	concord dead-letters [flags] discard SEQ|-all
		List the messages that consumers gave up on (CONCORD_DEAD_LETTERS)
		with their error, consumer and delivery count; replay one or all
		to their topic (consumers that applied one skip it by their inbox),
		or delete them. Without -nats, through a running app's admin
		listener (-addr, default http://127.0.0.1:9080; an app in embedded
		mode, as make run starts, has no other way in) with an admin
		credential like concord config: -creds FILE (default
		data/admin.creds; env CONCORD_ADMIN_CREDS) and -as NAME. With
		-nats URL, connects to the NATS servers like an app in client
		mode instead (a concord node's -listen, or an app's listener:
		concord.WithCoordOptions(coord.WithListen(...),
		coord.WithListenAuth(...))), with -user and -password (env
		CONCORD_NATS_USER, CONCORD_NATS_PASSWORD) or -creds naming a NATS
		credentials file. Run "concord dead-letters -h" for the flags.
	concord config get [-addr URL] [-creds FILE] NAME
	concord config history [-addr URL] [-creds FILE] NAME [-limit N]
	concord config set [-addr URL] [-creds FILE] NAME JSON [-expect VERSION]
	concord config rollback [-addr URL] [-creds FILE] NAME VERSION [-expect VERSION]
		Read and write the dynamic configs of a running app through its
		admin listener (-addr, default http://127.0.0.1:9080): values are
		protojson of the config's message type. get prints the current
		value and its version; history the kept versions, newest first;
		set writes a new version, validated by the type's protovalidate
		rules (a violation is refused and listed); rollback writes a kept
		version's value again as a new version. Writes are
		compare-and-set: -expect names the version replaced (0 to
		create; default the current one, read first), and a write that
		lost the race is refused with the current version. Every call
		sends an admin credential's token from -creds (default
		data/admin.creds, the file an app creates in its data directory;
		env CONCORD_ADMIN_CREDS; -as NAME picks one of several); its
		name is recorded as the writer of the version.
	concord version
		Print Concord's version.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var uerr usageError
	switch {
	case errors.As(err, &uerr):
		fmt.Fprintf(os.Stderr, "concord: %v\n\n%s", err, usage)
		os.Exit(2)
	case err != nil:
		fmt.Fprintf(os.Stderr, "concord: %v\n", err)
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"no command given"}
	}
	switch args[0] {
	case "new":
		return newCmd(ctx, args[1:], stdout, stderr)
	case "proto-deps":
		return protoDeps(ctx, args[1:], stderr)
	case "node":
		return nodeCmd(ctx, args[1:], stdout, stderr)
	case "status":
		return statusCmd(ctx, args[1:], stdout, stderr)
	case "dead-letters":
		return deadLettersCmd(ctx, args[1:], stdout, stderr)
	case "config":
		return configCmd(ctx, args[1:], stdout, stderr)
	case "lock":
		return lockCmd(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, rpc.Version)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

func protoDeps(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("proto-deps", flag.ContinueOnError)
	fs.SetOutput(stderr)
	skip := fs.Bool("skip-concord", false, "do not write concord/v1/options.proto (for a workspace that already has it)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() != 1 {
		return usageError{"proto-deps needs exactly one DIR"}
	}
	return protodeps.Write(ctx, fs.Arg(0), protodeps.Options{SkipConcord: *skip})
}
