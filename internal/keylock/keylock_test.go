package keylock

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMap(t *testing.T) {
	var l Map
	unlock, err := l.Lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	// A held key makes the next locker wait until its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Lock(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock of a held key: %v, want the context's error", err)
	}
	// Another key is independent.
	unlockB, err := l.Lock(context.Background(), "b")
	if err != nil {
		t.Fatal(err)
	}
	unlockB()
	// A waiter gets the key once it is unlocked.
	got := make(chan error, 1)
	go func() {
		u, err := l.Lock(context.Background(), "a")
		if err == nil {
			u()
		}
		got <- err
	}()
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter did not get the key within 5s of its unlock")
	}
	if n := l.Len(); n != 0 {
		t.Fatalf("%d keys kept after every lock ended", n)
	}
}
