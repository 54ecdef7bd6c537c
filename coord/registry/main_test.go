package registry_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/registry"
	"github.com/concordrpc/concord/internal/clustertest"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/rpc"
)

func TestMain(m *testing.M) {
	clustertest.MaybeRunNode() // a child process serving a node
	goleak.VerifyTestMain(m)
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

var quiet = nodetest.Quiet

// openNode opens an embedded node in a temporary directory, closed at
// cleanup.
var openNode = nodetest.Open

// within returns a context that ends after d (or with the test).
var within = nodetest.Within

// register registers inst with a discard logger, closed at cleanup.
func register(t *testing.T, n *coord.Node, inst registry.Registration, opts ...registry.Option) *registry.Registrar {
	t.Helper()
	r, err := registry.Register(within(t, 10*time.Second), n, inst, append([]registry.Option{registry.WithLogger(discard())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// resolver returns a resolver with a discard logger, closed at cleanup.
func resolver(t *testing.T, n *coord.Node, opts ...registry.ResolverOption) *registry.Resolver {
	t.Helper()
	r := registry.NewResolver(n, append([]registry.ResolverOption{registry.ResolverLogger(discard())}, opts...)...)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// ids returns the instances' IDs.
func ids(insts []rpc.Instance) []string {
	out := make([]string, len(insts))
	for i, in := range insts {
		out[i] = in.ID
	}
	return out
}

// await polls cond every 10ms until it holds or d passes, and returns how
// long it took. Tests use it to measure when a view converged, never to
// drive the code under test.
func await(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for i := 0; ; i++ {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// resolveNow resolves with a short deadline and returns the IDs, or nil if
// none were ready.
func resolveNow(r *registry.Resolver, service string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	insts, err := r.Resolve(ctx, service)
	if err != nil {
		return nil
	}
	return ids(insts)
}
