package lock_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/coord/lock"
)

func TestGuard(t *testing.T) {
	dir := t.TempDir()
	store, err := localstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	g := lock.NewGuard(store)
	ctx := within(t, 30*time.Second)
	steps := []struct {
		token uint64
		stale bool
	}{{5, false}, {5, false}, {4, true}, {0, true}, {9, false}, {6, true}, {9, false}}
	for _, s := range steps {
		err := g.Check(ctx, "r", s.token)
		if errors.Is(err, lock.ErrStaleToken) != s.stale || (err != nil && !s.stale) {
			t.Fatalf("Check(%d): %v, stale want %v", s.token, err, s.stale)
		}
	}
	if err := g.Check(ctx, "other", 1); err != nil {
		t.Fatalf("tokens are per resource: %v", err)
	}
	ok, err := g.Admit(ctx, "r", 8)
	if ok || err != nil {
		t.Fatalf("Admit(8): %v, %v; want false, nil", ok, err)
	}
	// The record survives a restart.
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if store, err = localstore.Open(dir); err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	g = lock.NewGuard(store)
	if h, err := g.Highest("r"); err != nil || h != 9 {
		t.Fatalf("Highest after reopen: %d, %v; want 9", h, err)
	}
	if err := g.Check(ctx, "r", 8); !errors.Is(err, lock.ErrStaleToken) {
		t.Fatalf("Check(8) after reopen: %v", err)
	}
}

// TestGuardUpdateIsAtomic races writers with different tokens through
// Update: the value that remains was written with the highest admitted
// token, and every write admitted after a higher one was refused.
func TestGuardUpdateIsAtomic(t *testing.T) {
	store, err := localstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	g := lock.NewGuard(store)
	ctx := within(t, 30*time.Second)
	var wg sync.WaitGroup
	for token := uint64(1); token <= 40; token++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := g.Update(ctx, "res", token, func(tx *localstore.Tx) error {
				return tx.Set([]byte("res/value"), fmt.Appendf(nil, "%d", token))
			})
			if err != nil && !errors.Is(err, lock.ErrStaleToken) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	v, err := store.Get([]byte("res/value"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := g.Highest("res")
	if err != nil {
		t.Fatal(err)
	}
	if string(v) != fmt.Sprint(h) {
		t.Fatalf("value %s written with token %s, but highest admitted is %d: a stale write landed", v, v, h)
	}
}
