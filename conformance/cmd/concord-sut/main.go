// Command concord-sut is the server under test that the Connect conformance
// runner (connectrpc.com/conformance, `connectconformance --mode server`)
// starts for each server configuration. `make conformance` builds it and
// runs the suite.
//
//	concord-sut [-log-level debug|info|warn|error]
//
// It reads a size-prefixed connectrpc.conformance.v1.ServerCompatRequest
// from stdin, serves the conformance service on 127.0.0.1 with
// rpc.NewServer (cleartext HTTP/1.1 and h2c, or TLS with the runner's
// certificate, requiring client certificates when the runner asks), writes a
// size-prefixed ServerCompatResponse with the port to stdout, and drains on
// SIGTERM.
//
// The server runs Concord's full default interceptor chain (logging,
// recovery, deadline, validation), so the suite checks Concord as users run
// it. Besides the logger (see -log-level), only two settings differ from the
// defaults, both for the runner: the per-message read limit is the one it
// sends when it sends one (the suite's message-size cases), and the drain
// timeout is shorter than the 5 s the runner waits between SIGTERM and
// SIGKILL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"connectrpc.com/connect/v2"

	v1 "github.com/concordrpc/concord/conformance/internal/gen/connectrpc/conformance/v1"
	"github.com/concordrpc/concord/conformance/internal/gen/connectrpc/conformance/v1/conformancev1connect"
	"github.com/concordrpc/concord/conformance/internal/service"
	"github.com/concordrpc/concord/rpc"
)

// drainTimeout stays under the runner's 5 s between SIGTERM and SIGKILL.
const drainTimeout = 3 * time.Second

func main() {
	logLevel := flag.String("log-level", "", "write server logs at this level and above to stderr (debug, info, warn, error); default: logs are built but discarded")
	flag.Parse()
	logger, err := newLogger(*logLevel, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "concord-sut:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdin, os.Stdout, logger); err != nil {
		fmt.Fprintln(os.Stderr, "concord-sut:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, in io.Reader, out io.Writer, logger *slog.Logger) error {
	var req v1.ServerCompatRequest
	if err := readDelimited(in, &req); err != nil {
		return fmt.Errorf("read server config: %w", err)
	}
	if req.GetHttpVersion() == v1.HTTPVersion_HTTP_VERSION_3 {
		return errors.New("HTTP/3 is not supported")
	}
	opts := []rpc.ServerOption{rpc.WithLogger(logger), rpc.WithDrain(0, drainTimeout)}
	if limit := req.GetMessageReceiveLimit(); limit > 0 {
		opts = append(opts, rpc.WithReadMaxBytes(int(limit)))
	}
	res := &v1.ServerCompatResponse{Host: "127.0.0.1"}
	if req.GetUseTls() {
		cfg, err := tlsConfig(req.GetServerCreds(), req.GetClientTlsCert())
		if err != nil {
			return err
		}
		opts = append(opts, rpc.WithTLS(cfg))
		res.PemCert = req.GetServerCreds().GetCert()
	}

	srv := rpc.NewServer(opts...)
	srv.RegisterService(&rpc.ServicePolicy{
		Name:          conformancev1connect.ConformanceServiceName,
		DiscoveryName: conformancev1connect.ConformanceServiceName,
	}, func(s *connect.Server) {
		conformancev1connect.RegisterConformanceServiceHandler(s, service.Service{})
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	res.Port = uint32(ln.Addr().(*net.TCPAddr).Port)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	// Addr returns once Serve has accepted the registrations; a failure
	// before that ends Serve instead.
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-waitAddr(ctx, srv):
	}
	if err := writeDelimited(out, res); err != nil {
		return fmt.Errorf("write server address: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, rpc.ErrDrainTimeout) {
		return err
	}
	return nil
}

func waitAddr(ctx context.Context, srv *rpc.Server) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = srv.Addr(ctx)
	}()
	return done
}

// newLogger returns a logger at level writing to w, or, for an empty level,
// one that builds every record and discards it: the logging interceptor
// still does all its work, without flooding the runner's output with the
// errors the suite provokes on purpose.
func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	if level == "" {
		return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug})), nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad -log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
