// Command rawgreeter is the cold-start baseline: the greeter on plain
// connect-go v2 and net/http, with nothing Concord adds (no interceptors,
// validation, health, reflection or drain).
//
//	rawgreeter [-addr 127.0.0.1:8080]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/concordrpc/concord/bench/internal/baseline"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to serve on")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	hs := baseline.NewHTTPServer(baseline.RawConnectHandler())
	hs.Addr = *addr
	go func() {
		<-ctx.Done()
		_ = hs.Shutdown(context.Background())
	}()
	if err := hs.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "rawgreeter:", err)
		os.Exit(1)
	}
}
