package tcc

import (
	"context"
	"testing"

	"connectrpc.com/connect/v2"
)

func TestKeyLocks(t *testing.T) {
	t.Parallel()
	var l keyLocks
	unlock, err := l.lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.lock(ctx, "a"); connect.CodeOf(err) != connect.CodeCanceled {
		t.Fatalf("lock of a held key with an ended context: %v", err)
	}
	unlock()
	if len(l.m) != 0 {
		t.Fatalf("%d locks left", len(l.m))
	}
	unlock, err = l.lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	unlock()
}
