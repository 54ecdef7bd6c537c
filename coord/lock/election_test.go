package lock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord/lock"
)

// TestElection runs three candidates: one leader at a time, failover when
// the leader's lease is lost, immediate handoff on Resign, and an observer
// that sees every new leader. The lease is lost by stopping only the
// leader's keepalive through a test hook (SetPausedForTest), in this
// process: nothing is paused but that loop. A real pause of a holder's
// whole process (SIGSTOP of a child) is TestStoppedProcessLosesLock.
func TestElection(t *testing.T) {
	n := openNode(t)
	b := lock.FromNode(n)
	ctx := within(t, 60*time.Second)
	const ttl = time.Second

	observer := lock.NewElection(b, "svc")
	if _, err := observer.Leader(ctx); !errors.Is(err, lock.ErrNoLeader) {
		t.Fatalf("Leader before any campaign: %v, want ErrNoLeader", err)
	}
	obsCtx, stopObserving := context.WithCancel(ctx)
	updates := observer.Observe(obsCtx)
	defer func() {
		stopObserving()
		for range updates { // drain until the observer exits
		}
	}()
	nextUpdate := func(want string) lock.Leader {
		t.Helper()
		select {
		case l, ok := <-updates:
			if !ok || l.Value != want {
				t.Fatalf("observed %+v (open %v), want leader %s", l, ok, want)
			}
			return l
		case <-time.After(5 * time.Second):
			t.Fatalf("observer did not see %s within 5s", want)
		}
		return lock.Leader{}
	}

	cands := make([]*lock.Election, 3)
	won := make(chan int, len(cands))
	grantedAt := make([]time.Time, len(cands))
	for i := range cands {
		cands[i] = lock.NewElection(b, "svc", lock.WithTTL(ttl))
		go func() {
			if _, err := cands[i].Campaign(ctx, fmt.Sprintf("cand-%d", i)); err != nil {
				t.Errorf("candidate %d: %v", i, err)
				return
			}
			grantedAt[i] = time.Now()
			won <- i
		}()
	}
	leaderOf := func(within time.Duration) int {
		t.Helper()
		select {
		case i := <-won:
			return i
		case <-time.After(within):
			t.Fatalf("no new leader within %v", within)
		}
		return -1
	}
	noLeaderFor := func(d time.Duration) {
		t.Helper()
		select {
		case i := <-won:
			t.Fatalf("candidate %d became leader while another leads", i)
		case <-time.After(d):
		}
	}

	first := leaderOf(10 * time.Second)
	noLeaderFor(3 * ttl) // the leader's keepalive keeps others out
	l1 := nextUpdate(fmt.Sprintf("cand-%d", first))
	if l1.Term != cands[first].Term() {
		t.Fatalf("observed term %d, leader's %d", l1.Term, cands[first].Term())
	}
	if l, err := observer.Leader(ctx); err != nil || l != l1 {
		t.Fatalf("Leader: %+v, %v; want %+v", l, err, l1)
	}

	// The leader's keepalive stops (the hook: the process runs on): its
	// lease runs out and another takes over.
	cands[first].SetPausedForTest(true)
	hung := time.Now()
	second := leaderOf(ttl + 1500*time.Millisecond)
	t.Logf("failover %v after the leader hung (TTL %v)", time.Since(hung).Round(time.Millisecond), ttl)
	if !cands[first].Deadline().Before(grantedAt[second]) {
		t.Fatalf("leaderships overlap: old leader surely leader until %v, new one granted at %v",
			cands[first].Deadline(), grantedAt[second])
	}
	l2 := nextUpdate(fmt.Sprintf("cand-%d", second))
	if l2.Term <= l1.Term {
		t.Fatalf("term %d after %d", l2.Term, l1.Term)
	}
	cands[first].SetPausedForTest(false)
	select {
	case <-cands[first].Done():
	case <-time.After(time.Second):
		t.Fatal("hung leader did not notice its lost lease within 1s of resuming")
	}
	if err := cands[first].Resign(ctx); !errors.Is(err, lock.ErrNotLeader) {
		t.Fatalf("Resign of a deposed leader: %v, want ErrNotLeader", err)
	}

	// Resign hands over at once (the waiter is woken by the watch).
	resigned := time.Now()
	if err := cands[second].Resign(ctx); err != nil {
		t.Fatal(err)
	}
	third := leaderOf(ttl)
	t.Logf("handoff %v after Resign", time.Since(resigned).Round(time.Millisecond))
	if third == first || third == second {
		t.Fatalf("leader %d again", third)
	}
	l3 := nextUpdate(fmt.Sprintf("cand-%d", third))
	if l3.Term <= l2.Term {
		t.Fatalf("term %d after %d", l3.Term, l2.Term)
	}
	if err := cands[third].Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cands[third].Campaign(ctx, "again"); err != nil {
		t.Fatal(err)
	}
	if _, err := cands[third].Campaign(ctx, "twice"); !errors.Is(err, lock.ErrAlreadyHeld) {
		t.Fatalf("Campaign while leader: %v, want ErrAlreadyHeld", err)
	}
	if err := cands[third].Resign(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestElectionLongestName checks that an election with a name of
// MaxNameLen bytes (its key is longer, with its prefix) works in full:
// Campaign, Leader and Observe.
func TestElectionLongestName(t *testing.T) {
	n := openNode(t)
	b := lock.FromNode(n)
	ctx := within(t, 30*time.Second)
	name := strings.Repeat("e", lock.MaxNameLen)
	e := lock.NewElection(b, name)
	term, err := e.Campaign(ctx, "me")
	if err != nil {
		t.Fatal(err)
	}
	if l, err := e.Leader(ctx); err != nil || l != (lock.Leader{Value: "me", Term: term}) {
		t.Fatalf("Leader: %+v, %v", l, err)
	}
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	if l, ok := <-e.Observe(octx); !ok || l.Term != term {
		t.Fatalf("Observe: %+v, %v", l, ok)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
}
