package concord_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord/lock"
)

// TestAppMutexAndElection takes a lock and leadership through the App,
// waiting for its node, and checks that stopping the App ends the lease
// (no goroutine outlives it: goleak).
func TestAppMutexAndElection(t *testing.T) {
	app, _, stop := runApp(t, t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	mu := app.Mutex("jobs/nightly", lock.WithTTL(2*time.Second))
	token, err := mu.Lock(ctx) // waits for the node
	if err != nil || token == 0 {
		t.Fatalf("Lock: %d, %v", token, err)
	}
	if _, err := app.Mutex("jobs/nightly").TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("second contender: %v, want ErrLocked", err)
	}
	e := app.Election("scheduler", lock.WithTTL(2*time.Second))
	if _, err := e.Campaign(ctx, "me"); err != nil {
		t.Fatal(err)
	}
	if l, err := app.Election("scheduler").Leader(ctx); err != nil || l.Value != "me" {
		t.Fatalf("Leader: %+v, %v", l, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, done := range []<-chan struct{}{mu.Done(), e.Done()} {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("lease still live 5s after the App stopped")
		}
	}
}
