package tcc_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/tcc"
)

// TestRunCleanupDrainsBacklog: RunCleanup deletes every finished branch
// past its retention in limit-sized calls, without waiting an interval
// between them: afterwards the barrier no longer recognises them (a
// repeated Try runs its handler again), while a branch that is only
// tried is kept.
func TestRunCleanupDrainsBacklog(t *testing.T) {
	store, err := localstore.Open(t.TempDir(), localstore.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	old := time.Now().Add(-30 * 24 * time.Hour)
	b := tcc.NewBadgerBarrier(store, tcc.WithClock(func() time.Time { return old }), tcc.WithCleanupLimit(1))
	ctx := t.Context()
	var runs atomic.Int64
	fn := func(context.Context) error { runs.Add(1); return nil }
	key := func(i int) tcc.BranchKey { return tcc.BranchKey{TxID: "tx" + string(rune('a'+i)), BranchID: "b1"} }
	for i := range 3 {
		for _, ph := range []tcc.Phase{tcc.PhaseTry, tcc.PhaseConfirm} {
			if _, err := b.Run(ctx, key(i), ph, fn); err != nil {
				t.Fatal(err)
			}
		}
	}
	tried := tcc.BranchKey{TxID: "tried", BranchID: "b1"}
	if _, err := b.Run(ctx, tried, tcc.PhaseTry, fn); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); tcc.RunCleanup(cctx, b, time.Hour, nil) }()
	// The barrier's keys (under "concord/tcc/"): rows and a done index
	// for each finished branch; one row for the tried one.
	keys := func() int {
		n := 0
		if err := store.Scan([]byte("concord/tcc/"), func(_, _ []byte) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; keys() != 1; i++ {
		if time.Now().After(deadline) || i > 1000 {
			t.Fatalf("cleanup backlog not drained: %d barrier keys left, want 1", keys())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	for i := range 3 {
		before := runs.Load()
		if _, err := b.Run(ctx, key(i), tcc.PhaseTry, fn); err != nil {
			t.Fatal(err)
		}
		if runs.Load() != before+1 {
			t.Fatalf("branch %d still recognised after cleanup", i)
		}
	}
	before := runs.Load()
	if _, err := b.Run(ctx, tried, tcc.PhaseTry, fn); err != nil || runs.Load() != before {
		t.Fatalf("the tried-only branch was deleted: %v", err)
	}
}
