package config_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/config"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/internal/clustertest"
	v1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1"
)

func TestMain(m *testing.M) {
	clustertest.MaybeRunNode() // a child process serving a cluster node
	goleak.VerifyTestMain(m)
}

// openLocal opens a Badger store in dir, closed at cleanup.
func openLocal(t *testing.T, dir string) *localstore.Store {
	t.Helper()
	s, err := localstore.Open(dir, localstore.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// handle returns an Echo config handle, closed at cleanup.
func handle(t *testing.T, b config.Backend, local config.Local, name string) *config.Handle[*v1.EchoRequest] {
	t.Helper()
	h := config.New(b, local, name, &v1.EchoRequest{Text: "default"})
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// waitLoaded waits for h's first load.
func waitLoaded[T interface{ Wait(context.Context) error }](t *testing.T, h T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// await polls cond every 10ms until it holds or d passes.
func await(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// downBackend is a Backend whose coordination is always unavailable.
type downBackend struct{}

func (downBackend) Node(context.Context) (*coord.Node, error) {
	return nil, errors.New("coordination is down")
}
