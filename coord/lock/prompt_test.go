package lock_test

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/lock"
)

// TestLockReturnsWhileWatchIsStuck makes a waiter's watch unable to stop
// promptly, and checks that Lock still returns within 500ms of its grant.
//
// The waiter's watch is an ordered consumer. The test fills the lock
// stream's consumer limit and deletes that consumer: the ordered consumer
// then retries re-creating itself with a growing backoff (1s, 2s, 4s ...),
// holding its mutex, so that stopping it blocks until the current backoff
// step ends. The holder releases during the 4s step; the waiter is woken by
// its timer at the holder's lease expiry and takes the lock.
func TestLockReturnsWhileWatchIsStuck(t *testing.T) {
	n := openNode(t)
	b := lock.FromNode(n)
	ctx := within(t, 60*time.Second)
	js := n.JetStream()
	stream := "KV_" + coord.BucketLocks

	// The server's audit advisories report every consumer create and its
	// answer, so the test can follow the ordered consumer's retries.
	creates := make(chan jsAPIAudit, 64)
	sub, err := n.Conn().Subscribe("$JS.EVENT.ADVISORY.API", func(m *nats.Msg) {
		var a jsAPIAudit
		if json.Unmarshal(m.Data, &a) == nil && strings.HasPrefix(a.Subject, "$JS.API.CONSUMER.CREATE."+stream+".") {
			select {
			case creates <- a:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	nextCreate := func(what string) jsAPIAudit {
		t.Helper()
		select {
		case a := <-creates:
			return a
		case <-time.After(15 * time.Second):
			t.Fatalf("no consumer create within 15s: %s", what)
		}
		return jsAPIAudit{}
	}

	holder := lock.NewMutex(b, "k", lock.WithTTL(time.Second))
	if _, err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	const waiterTTL = 10 * time.Second // no keepalive moves its deadline within 3s of the grant
	waiter := lock.NewMutex(b, "k", lock.WithTTL(waiterTTL))
	type result struct {
		token uint64
		err   error
		at    time.Time
	}
	got := make(chan result, 1)
	go func() {
		token, err := waiter.Lock(ctx)
		got <- result{token, err, time.Now()}
	}()

	// The waiter's watch is created; fill the limit and delete it.
	a := nextCreate("the waiter's watch")
	if strings.Contains(a.Response, `"error"`) {
		t.Fatalf("watch create failed: %s", a.Response)
	}
	watchName := strings.Split(a.Subject, ".")[5]
	if _, err := js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Name: "filler", AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	nextCreate("the filler")
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxConsumers = 1 // the filler's: no room for the watch to come back
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(ctx, stream, watchName); err != nil {
		t.Fatal(err)
	}
	// Re-creations fail at once, then after 1s and 2s; the next waits 4s.
	for i := range 3 {
		a := nextCreate("the watch's retry")
		if !strings.Contains(a.Response, "maximum consumers limit reached") {
			t.Fatalf("retry %d: %s, want the consumer limit error", i, a.Response)
		}
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("waiter did not get the lock within 10s of the release")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	// The deadline counts from the grant's send: leaseEnd is send + TTL - 1%.
	granted := waiter.Deadline().Add(-(waiterTTL - waiterTTL/100))
	if d := r.at.Sub(granted); d > 500*time.Millisecond {
		t.Errorf("Lock returned %v after its grant was sent, want at most 500ms", d.Round(time.Millisecond))
	} else {
		t.Logf("Lock returned %v after its grant was sent", d.Round(time.Millisecond))
	}
	if err := waiter.Valid(); err != nil {
		t.Fatalf("Valid after Lock: %v", err)
	}
	if err := waiter.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// Stopping the ordered consumer ends with the backoff step; wait for it
	// so that goleak in TestMain sees nothing of it.
	waitGone(t, "jetstream.(*ordered", 15*time.Second)
}

// jsAPIAudit is the part of a JetStream API audit advisory the tests read.
type jsAPIAudit struct {
	Subject  string `json:"subject"`
	Response string `json:"response"`
}

// waitGone waits, at most d, until no goroutine's stack mentions fn. There
// is no channel for goroutines of a library that outlive its Stop, so it
// checks every 50ms.
func waitGone(t *testing.T, fn string, d time.Duration) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for end := time.Now().Add(d); ; {
		n := runtime.Stack(buf, true)
		if !strings.Contains(string(buf[:n]), fn) {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("goroutines in %s still running after %v", fn, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
