package txlog_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/txlog"
	"github.com/concordrpc/concord/internal/nodetest"
)

func record(id string) *txlog.Record {
	now := time.Now()
	return &txlog.Record{
		ID: id, State: txlog.StateTrying, Created: now, Deadline: now.Add(time.Minute),
		Branches: []txlog.Branch{
			{ID: "b1", Service: "checking", Instance: "i1", Try: "/x.S/Try", Confirm: "/x.S/Confirm", Cancel: "/x.S/Cancel", Request: []byte{1, 2}},
			{ID: "b2", Service: "savings", Try: "/y.S/Try", Confirm: "/y.S/Confirm", Cancel: "/y.S/Cancel"},
		},
	}
}

// TestDecisionIsWrittenOnce: of two writers that read the same trying
// record, exactly one stores its decision; the other gets ErrConflict and
// reads the winner's.
func TestDecisionIsWrittenOnce(t *testing.T) {
	node := nodetest.Open(t, nodetest.Quiet())
	ctx := nodetest.Within(t, 30*time.Second)
	l := txlog.Open(node)
	for round := range 20 {
		r := record(txlog.NewID())
		if err := l.Begin(ctx, r); err != nil {
			t.Fatal(err)
		}
		var (
			wg   sync.WaitGroup
			errs [2]error
			recs [2]*txlog.Record
		)
		for i, st := range []txlog.State{txlog.StateConfirming, txlog.StateCancelling} {
			recs[i] = r.Clone()
			recs[i].State = st
			wg.Go(func() { errs[i] = l.Update(ctx, recs[i]) })
		}
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if won >= 0 {
					t.Fatalf("round %d: both decisions stored", round)
				}
				won = i
			case !errors.Is(err, txlog.ErrConflict):
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: no decision stored", round)
		}
		got, err := l.Get(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != recs[won].State || got.Seq != recs[won].Seq {
			t.Fatalf("round %d: log has %s@%d, winner wrote %s@%d", round, got.State, got.Seq, recs[won].State, recs[won].Seq)
		}
		// A second Begin of the same ID is refused.
		if err := l.Begin(ctx, r.Clone()); !errors.Is(err, txlog.ErrConflict) {
			t.Fatalf("round %d: Begin of a used ID: %v", round, err)
		}
	}
}

// TestFinishRemovesAndWatchFollows: a watch reports unfinished
// transactions, their writes and their end; Get no longer finds a
// finished one, and a stale Finish is refused.
func TestFinishRemovesAndWatchFollows(t *testing.T) {
	node := nodetest.Open(t, nodetest.Quiet())
	ctx := nodetest.Within(t, 30*time.Second)
	l := txlog.Open(node)
	old := record(txlog.NewID())
	if err := l.Begin(ctx, old); err != nil {
		t.Fatal(err)
	}
	heads := make(chan txlog.Head, 16)
	w, err := l.Watch(ctx, func(h txlog.Head) { heads <- h })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	next := func() txlog.Head {
		t.Helper()
		select {
		case h := <-heads:
			return h
		case <-time.After(10 * time.Second):
			t.Fatal("no watch event")
		}
		return txlog.Head{}
	}
	if h := next(); h.ID != old.ID || h.State != txlog.StateTrying || !h.Deadline.Equal(old.Deadline.Truncate(time.Millisecond)) {
		t.Fatalf("first head %+v", h)
	}
	d := old.Clone()
	d.State = txlog.StateConfirming
	if err := l.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	if h := next(); h.State != txlog.StateConfirming {
		t.Fatalf("head after decision %+v", h)
	}
	fin := d.Clone()
	fin.State = txlog.StateConfirmed
	stale := fin.Clone()
	stale.Seq = old.Seq
	if err := l.Finish(ctx, stale, time.Minute); !errors.Is(err, txlog.ErrConflict) {
		t.Fatalf("Finish from a stale record: %v", err)
	}
	if err := l.Finish(ctx, fin, time.Minute); err != nil {
		t.Fatal(err)
	}
	if h := next(); !h.Finished || h.ID != old.ID {
		t.Fatalf("head after finish %+v", h)
	}
	if _, err := l.Get(ctx, old.ID); !errors.Is(err, txlog.ErrNotFound) {
		t.Fatalf("Get after finish: %v", err)
	}
}

func TestRecordValidation(t *testing.T) {
	node := nodetest.Open(t, nodetest.Quiet())
	ctx := nodetest.Within(t, 10*time.Second)
	l := txlog.Open(node)
	for name, mod := range map[string]func(r *txlog.Record){
		"subject break-out ID": func(r *txlog.Record) { r.ID = "a.>" },
		"long ID":              func(r *txlog.Record) { r.ID = strings.Repeat("a", txlog.MaxIDLen+1) },
		"no branches":          func(r *txlog.Record) { r.Branches = nil },
		"repeated branch":      func(r *txlog.Record) { r.Branches[1].ID = r.Branches[0].ID },
		"no procedure":         func(r *txlog.Record) { r.Branches[0].Cancel = "" },
		"bad state":            func(r *txlog.Record) { r.State = "maybe" },
		"no deadline":          func(r *txlog.Record) { r.Deadline = time.Time{} },
		"huge request":         func(r *txlog.Record) { r.Branches[0].Request = make([]byte, txlog.MaxRecordSize) },
	} {
		r := record(txlog.NewID())
		mod(r)
		if err := l.Begin(ctx, r); !errors.Is(err, txlog.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := l.Get(ctx, "no.such"); !errors.Is(err, txlog.ErrInvalid) {
		t.Errorf("Get of a bad ID: %v", err)
	}
}

// FuzzDecode: Decode never panics, and what it accepts is valid and
// encodes back to something it accepts again.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"id":"a","state":"trying","branches":[{"id":"b1","service":"s","try":"/a/T","confirm":"/a/C","cancel":"/a/X"}],"deadline":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"id":"a.b","state":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := txlog.Decode(data)
		if err != nil {
			if !errors.Is(err, txlog.ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted an invalid record: %v", err)
		}
	})
}

// TestList: unfinished transactions are listed with their records, and
// finished ones as summaries without request bytes, newest first.
func TestList(t *testing.T) {
	node := nodetest.Open(t, nodetest.Quiet())
	ctx := nodetest.Within(t, 30*time.Second)
	l := txlog.Open(node)
	var ids []string
	for range 3 {
		r := record(txlog.NewID())
		if err := l.Begin(ctx, r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
		r.State = txlog.StateCancelled
		if err := l.Finish(ctx, r, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	open := record(txlog.NewID())
	if err := l.Begin(ctx, open); err != nil {
		t.Fatal(err)
	}
	var unfinished, finished []*txlog.Record
	for i := 0; i < 100; i++ { // the summaries are published without waiting
		var err error
		if unfinished, finished, err = l.List(ctx, 2); err != nil {
			t.Fatal(err)
		}
		if len(finished) == 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(unfinished) != 1 || unfinished[0].ID != open.ID || unfinished[0].State != txlog.StateTrying {
		t.Fatalf("unfinished %+v", unfinished)
	}
	if len(finished) != 2 || finished[0].ID != ids[2] || finished[1].ID != ids[1] || finished[0].State != txlog.StateCancelled {
		t.Fatalf("finished %v, want the last two of %v, newest first", finished, ids)
	}
	if finished[0].Branches[0].Request != nil {
		t.Fatal("a summary keeps request bytes")
	}
}

// TestListRecentFinished: with more finished transactions than it lists,
// List returns the newest StatusFinished summaries, newest first, while
// transactions are also in flight; and it creates no consumer on the log's
// stream (a status read calls it on every poll).
func TestListRecentFinished(t *testing.T) {
	node := nodetest.Open(t, nodetest.Quiet())
	ctx := nodetest.Within(t, 30*time.Second)
	l := txlog.Open(node)
	var ids []string
	for i := range 30 {
		r := record(txlog.NewID())
		if err := l.Begin(ctx, r); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 { // left in flight, between finished ones
			continue
		}
		r.State = txlog.StateConfirming
		if err := l.Update(ctx, r); err != nil {
			t.Fatal(err)
		}
		r.State = txlog.StateConfirmed
		if err := l.Finish(ctx, r, time.Minute); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	newest := ids[len(ids)-txlog.StatusFinished:]
	slices.Reverse(newest)
	var got []string
	for i := 0; ; i++ { // the summaries are published without waiting
		unfinished, finished, err := l.List(ctx, txlog.StatusFinished)
		if err != nil {
			t.Fatal(err)
		}
		if len(unfinished) != 10 {
			t.Fatalf("%d unfinished, want 10", len(unfinished))
		}
		got = got[:0]
		for _, r := range finished {
			got = append(got, r.ID)
		}
		if slices.Equal(got, newest) {
			break
		}
		if i == 100 {
			t.Fatalf("finished %v, want the newest %d of %v, newest first", got, txlog.StatusFinished, ids)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s, err := node.JetStream().Stream(ctx, coord.StreamTxLog)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Consumers; n != 0 {
		t.Fatalf("the log's stream has %d consumers after List, want 0", n)
	}
}
