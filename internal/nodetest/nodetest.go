package nodetest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
)

// Quiet routes a node's logs nowhere.
func Quiet() coord.Option { return coord.WithLogger(slog.New(slog.DiscardHandler)) }

// Open opens an embedded node in a temporary directory, with quiet logs,
// and closes it at cleanup.
func Open(t *testing.T, opts ...coord.Option) *coord.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	n, err := coord.Open(ctx, append([]coord.Option{coord.WithDataDir(t.TempDir()), Quiet()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// Within returns a context that ends after d, or with the test.
func Within(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// The NATS client credentials of test nodes that listen (ListenAuth), for
// clients in client mode (ClientAuth).
const (
	User     = "tester"
	Password = "nodetest-secret"
)

// ListenAuth makes a listening test node require User and Password.
func ListenAuth() coord.Option { return coord.WithListenAuth(User, Password) }

// ClientAuth returns the credentials of a client of a test node that
// listens with ListenAuth.
func ClientAuth() coord.ClientAuth { return coord.ClientAuth{Username: User, Password: Password} }
