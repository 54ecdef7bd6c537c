package lock_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/internal/condkv"
	"github.com/concordrpc/concord/coord/lock"
)

// TestReadStatus holds two locks (one named by WithHolder, one not),
// releases a third, and elects a leader: the status lists exactly the held
// ones with their tokens and time left, and the leader with its term.
func TestReadStatus(t *testing.T) {
	n := openNode(t)
	b := lock.FromNode(n)
	ctx := within(t, 30*time.Second)

	named := lock.NewMutex(b, "orders/42", lock.WithHolder("host-a/123"))
	tokNamed, err := named.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer named.Unlock(context.Background())
	anon := lock.NewMutex(b, "demo", lock.WithTTL(3*time.Second))
	tokAnon, err := anon.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Unlock(context.Background())
	gone := lock.NewMutex(b, "released")
	if _, err := gone.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := gone.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	el := lock.NewElection(b, "leader.x")
	term, err := el.Campaign(ctx, "candidate-1")
	if err != nil {
		t.Fatal(err)
	}
	defer el.Resign(context.Background())

	st := lock.ReadStatus(ctx, n, time.Second)
	if st.Unknown != "" || st.Truncated {
		t.Fatalf("status %+v", st)
	}
	if len(st.Held) != 2 {
		t.Fatalf("held %+v, want demo and orders/42", st.Held)
	}
	d, o := st.Held[0], st.Held[1]
	if d.Name != "demo" || d.Token != tokAnon || !strings.HasPrefix(d.Holder, "lease ") || d.ExpiresInMillis <= 0 || d.ExpiresInMillis > 3000 {
		t.Errorf("demo %+v, token %d", d, tokAnon)
	}
	if o.Name != "orders/42" || o.Token != tokNamed || o.Holder != "host-a/123" || o.ExpiresInMillis <= 0 || o.ExpiresInMillis > 10000 {
		t.Errorf("orders/42 %+v, token %d", o, tokNamed)
	}
	if len(st.Elections) != 1 || st.Elections[0] != (lock.ElectedLeader{Name: "leader.x", Leader: "candidate-1", Token: term, ExpiresInMillis: st.Elections[0].ExpiresInMillis}) || st.Elections[0].ExpiresInMillis <= 0 {
		t.Fatalf("elections %+v, term %d", st.Elections, term)
	}

	// A closed read context: unknown, with nothing listed.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if st := lock.ReadStatus(cctx, n, time.Second); st.Unknown == "" || len(st.Held)+len(st.Elections) != 0 {
		t.Fatalf("status with a done context %+v", st)
	}
}

// TestReadStatusTruncated holds more locks than a status lists: it lists
// the first MaxStatusEntries by name and says it is truncated.
func TestReadStatusTruncated(t *testing.T) {
	n := openNode(t)
	b := lock.FromNode(n)
	ctx := within(t, 60*time.Second)
	s, err := lock.NewSession(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range lock.MaxStatusEntries + 3 {
		if _, err := lock.NewMutex(b, fmt.Sprintf("k%03d", i), lock.WithSession(s)).Lock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st := lock.ReadStatus(ctx, n, 2*time.Second)
	if st.Unknown != "" || !st.Truncated || len(st.Held) != lock.MaxStatusEntries || st.Held[0].Name != "k000" || st.Held[lock.MaxStatusEntries-1].Name != "k099" {
		t.Fatalf("truncated %v, unknown %q, %d held", st.Truncated, st.Unknown, len(st.Held))
	}
}

// TestReadStatusIgnoresTickets checks that waiters' tickets, which live
// in the same buckets as locks and elections, are not listed: with a
// lock and an election each held and waited for, the status lists the
// lock and the leader once each, each with one waiting.
func TestReadStatusIgnoresTickets(t *testing.T) {
	n := openNode(t)
	b := lock.FromNode(n)
	ctx := within(t, 30*time.Second)
	queued := make(chan struct{}, 2)
	hook := lock.WithQueuedHookForTest(func(*lock.Session) { queued <- struct{}{} })
	mu := lock.NewMutex(b, "queued-lock")
	if _, err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	leader := lock.NewElection(b, "queued-election")
	if _, err := leader.Campaign(ctx, "leader"); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() {
		_, _ = lock.NewMutex(b, "queued-lock", hook).Lock(wctx)
		done <- struct{}{}
	}()
	go func() {
		_, _ = lock.NewElection(b, "queued-election", hook).Campaign(wctx, "candidate")
		done <- struct{}{}
	}()
	<-queued
	<-queued
	st := lock.ReadStatus(ctx, n, 5*time.Second)
	stop()
	<-done
	<-done
	if st.Unknown != "" {
		t.Fatal(st.Unknown)
	}
	if len(st.Held) != 1 || st.Held[0].Name != "queued-lock" || st.Held[0].Waiting != 1 {
		t.Errorf("held %+v, want queued-lock alone, one waiting", st.Held)
	}
	if len(st.Elections) != 1 || st.Elections[0].Name != "queued-election" || st.Elections[0].Leader != "leader" || st.Elections[0].Waiting != 1 {
		t.Errorf("elections %+v, want queued-election led by leader alone, one waiting", st.Elections)
	}
	if err := mu.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := leader.Resign(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestReadStatusManyCandidates checks that the tickets of waiting
// candidates do not count towards the status read's bound: with more
// tickets in the elections bucket than one read returns (written here
// directly, as many standby candidates would keep them), the leader is
// still listed; how many wait is then unknown (-1).
func TestReadStatusManyCandidates(t *testing.T) {
	n := openNode(t)
	b := lock.FromNode(n)
	ctx := within(t, 60*time.Second)
	leader := lock.NewElection(b, "busy")
	if _, err := leader.Campaign(ctx, "leader"); err != nil {
		t.Fatal(err)
	}
	js := n.JetStream()
	for i := range condkv.MaxListed + 10 {
		msg := nats.NewMsg(fmt.Sprintf("$KV.%s._cq.election.busy.c%d", coord.BucketElections, i))
		msg.Header.Set("Nats-TTL", "30s")
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	st := lock.ReadStatus(ctx, n, 5*time.Second)
	if st.Unknown != "" || st.Truncated || len(st.Elections) != 1 || st.Elections[0].Name != "busy" || st.Elections[0].Leader != "leader" || st.Elections[0].Waiting != -1 {
		t.Fatalf("unknown %q, truncated %v, elections %+v", st.Unknown, st.Truncated, st.Elections)
	}
	if err := leader.Resign(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestStatusJSONWithoutWaiting checks that a status from before the
// waiting count decodes with it unknown (-1), not as nobody waiting.
func TestStatusJSONWithoutWaiting(t *testing.T) {
	var st lock.Status
	old := `{"held":[{"name":"a","holder":"h","token":3,"expires_in_ms":900}],"elections":[{"name":"e","leader":"l","token":2,"expires_in_ms":800}]}`
	if err := json.Unmarshal([]byte(old), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Held) != 1 || st.Held[0] != (lock.HeldLock{Name: "a", Holder: "h", Token: 3, ExpiresInMillis: 900, Waiting: -1}) {
		t.Errorf("held %+v", st.Held)
	}
	if len(st.Elections) != 1 || st.Elections[0] != (lock.ElectedLeader{Name: "e", Leader: "l", Token: 2, ExpiresInMillis: 800, Waiting: -1}) {
		t.Errorf("elections %+v", st.Elections)
	}
	if err := json.Unmarshal([]byte(`{"held":[{"name":"a","waiting":2}]}`), &st); err != nil || st.Held[0].Waiting != 2 {
		t.Errorf("held %+v, %v: want waiting 2", st.Held, err)
	}
}
