package coord_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/internal/nodetest"
)

// TestPing: a round trip on a working connection; ErrUnavailable within
// the context's bound when the server is gone; ErrClosed on a closed node.
// (lambdafn's TestAppFunctionFreeze covers a connection cut while the
// process was frozen.)
func TestPing(t *testing.T) {
	server, err := coord.Open(nodetest.Within(t, 30*time.Second), coord.WithDataDir(t.TempDir()),
		coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth(), nodetest.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	client, err := coord.Open(nodetest.Within(t, 30*time.Second),
		coord.WithClient([]string{server.ClientURL()}, nodetest.ClientAuth()), coord.WithName("pinger"), nodetest.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Ping(nodetest.Within(t, 10*time.Second)); err != nil {
		t.Fatalf("Ping on a working connection: %v", err)
	}
	_ = server.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if err := client.Ping(ctx); !errors.Is(err, coord.ErrUnavailable) {
		t.Fatalf("Ping with the server gone: %v, want ErrUnavailable", err)
	}
	_ = client.Close()
	if err := client.Ping(t.Context()); !errors.Is(err, coord.ErrClosed) {
		t.Fatalf("Ping on a closed node: %v, want ErrClosed", err)
	}
}
