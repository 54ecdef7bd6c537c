package lock_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord/lock"
)

// events collects what WithEvents reports.
type events struct {
	mu  sync.Mutex
	got []lock.Event
}

func (e *events) add(ev lock.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
}

func (e *events) list() []lock.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]lock.Event(nil), e.got...)
}

// TestEvents: a grant had at once, one that waited for the holder (with
// its wait), an election's, and a lost lease are each reported once.
func TestEvents(t *testing.T) {
	n := openNode(t)
	b := lock.FromNode(n)
	ctx := within(t, 30*time.Second)
	var ev events
	opts := []lock.Option{lock.WithEvents(ev.add), lock.WithTTL(time.Second)}

	first := lock.NewMutex(b, "ev", opts...)
	if _, err := first.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	unlocked := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		unlocked <- first.Unlock(context.Background())
	}()
	second := lock.NewMutex(b, "ev", opts...)
	if _, err := second.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-unlocked; err != nil {
		t.Fatal(err)
	}
	el := lock.NewElection(b, "ev-election", opts...)
	if _, err := el.Campaign(ctx, "me"); err != nil {
		t.Fatal(err)
	}
	defer el.Resign(context.Background())
	got := ev.list()
	if len(got) != 3 {
		t.Fatalf("events %+v, want 3 grants", got)
	}
	if g := got[0]; g != (lock.Event{Kind: lock.EventGranted, Lock: "mutex"}) {
		t.Errorf("TryLock's event %+v", g)
	}
	if g := got[1]; g.Kind != lock.EventGranted || g.Lock != "mutex" || !g.Waited || g.Wait < 100*time.Millisecond {
		t.Errorf("waiting Lock's event %+v, want a wait of about 200ms", g)
	}
	if g := got[2]; g.Kind != lock.EventGranted || g.Lock != "election" || g.Waited {
		t.Errorf("Campaign's event %+v", g)
	}

	// The keepalive paused past the deadline: the lease is lost.
	second.SetPausedForTest(true)
	time.Sleep(1100 * time.Millisecond)
	second.SetPausedForTest(false)
	select {
	case <-second.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("lease not lost")
	}
	// Reported right after Done closes, by the keepalive's goroutine.
	for i := 0; len(ev.list()) < 4 && i < 500; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	got = ev.list()
	if len(got) != 4 || got[3] != (lock.Event{Kind: lock.EventLeaseLost, Lock: "mutex"}) {
		t.Fatalf("events %+v, want a lost mutex lease last", got)
	}
}
