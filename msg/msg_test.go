package msg_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/msg"
	"github.com/concordrpc/concord/tcc"
)

const topic = "orders.placed"

func ok(*msg.Delivery) error { return nil }

// TestRollbackPublishesNothing: a rolled-back transaction's messages
// never reach the stream or a handler; a committed one does, once.
func TestRollbackPublishesNothing(t *testing.T) {
	forStores(t, func(t *testing.T, e *env) {
		e.relay(t)
		e.subscribe(t, "c1", topic, ok)
		for i := range 5 {
			e.publish(t, false, msg.Message{Topic: topic, Key: "k" + strconv.Itoa(i), Payload: []byte("rolled back")})
		}
		e.publish(t, false, msg.Message{Topic: topic, Payload: []byte("rolled back")})
		ids := e.publish(t, true, msg.Message{Topic: topic, Key: "k1", Payload: []byte("committed")})
		waitFor(t, 10*time.Second, "the committed message applied", func() bool { return len(e.effects(t)) == 1 })
		// The relay has swept at least twice by now.
		time.Sleep(500 * time.Millisecond)
		eff := e.effects(t)
		if len(eff) != 1 || eff[0].ID != ids[0] || eff[0].Payload != "committed" {
			t.Fatalf("effects %+v, want only the committed message %s", eff, ids[0])
		}
		if n := streamMsgs(t, e.node, coord.StreamMessages); n != 1 {
			t.Errorf("stream holds %d messages, want 1", n)
		}
		if n := e.outboxRows(t); n != 0 {
			t.Errorf("%d outbox rows left", n)
		}
	})
}

// TestCommittedRowsSurviveMissingRelay: rows committed while no relay
// runs (a producer that died after its commit) are all delivered, once,
// by a relay started later on the same store; a second relay on the
// same store publishes nothing twice (duplicate window).
func TestCommittedRowsSurviveMissingRelay(t *testing.T) {
	forStores(t, func(t *testing.T, e *env) {
		const n = 30
		var want []string
		for i := range n {
			want = append(want, e.publish(t, true, msg.Message{Topic: topic, Key: "k" + strconv.Itoa(i%3), Payload: []byte(strconv.Itoa(i))})...)
		}
		if got := e.outboxRows(t); got != n {
			t.Fatalf("%d outbox rows, want %d", got, n)
		}
		if got := streamMsgs(t, e.node, coord.StreamMessages); got != 0 {
			t.Fatalf("stream holds %d messages before any relay", got)
		}
		if st, err := e.stats(context.Background()); err != nil || st.Rows != n || time.Since(st.Oldest) > time.Minute {
			t.Errorf("Stats = %+v, %v; want %d rows, the oldest just written", st, err, n)
		}
		e.subscribe(t, "c1", topic, ok)
		e.relay(t)
		e.relay(t) // a second relay on the same outbox
		waitFor(t, 15*time.Second, "every committed message applied", func() bool { return len(e.effects(t)) >= n })
		got := byConsumer(t, e.effects(t))["c1"]
		for _, id := range want {
			if _, ok := got[id]; !ok {
				t.Errorf("message %s lost", id)
			}
		}
		if len(got) != n {
			t.Errorf("%d distinct messages applied, want %d", len(got), n)
		}
		waitFor(t, 5*time.Second, "outbox empty", func() bool { return e.outboxRows(t) == 0 })
		if got := streamMsgs(t, e.node, coord.StreamMessages); got != n {
			t.Errorf("stream holds %d messages, want %d (a duplicate publish was stored)", got, n)
		}
		if st, err := e.stats(context.Background()); err != nil || st.Rows != 0 || !st.Oldest.IsZero() {
			t.Errorf("Stats = %+v, %v; want none", st, err)
		}
	})
}

// TestRedeliveryAfterCommitAppliesOnce: the ack of every message is lost
// after the local commit (as if the consumer died there); JetStream
// delivers each again, and the inbox answers without running the handler.
func TestRedeliveryAfterCommitAppliesOnce(t *testing.T) {
	forStores(t, func(t *testing.T, e *env) {
		const n = 10
		var runs, skipped counter
		e.subscribe(t, "c1", topic, func(d *msg.Delivery) error { runs.add(d.ID); return nil },
			msg.WithConcurrency(1),
			msg.WithAfterCommit(func(d *msg.Delivery) bool { return skipped.add(d.ID) == 1 }))
		e.relay(t)
		var ids []string
		for i := range n {
			key := ""
			if i%2 == 0 {
				key = "k" + strconv.Itoa(i)
			}
			ids = append(ids, e.publish(t, true, msg.Message{Topic: topic, Key: key, Payload: []byte(strconv.Itoa(i))})...)
		}
		waitFor(t, 20*time.Second, "every message acknowledged", func() bool { return idle(t, e.node, "c1", topic) && len(e.effects(t)) >= n })
		got := byConsumer(t, e.effects(t))["c1"]
		for _, id := range ids {
			if _, ok := got[id]; !ok {
				t.Errorf("message %s not applied", id)
			}
			if r := runs.get(id); r != 1 {
				t.Errorf("handler ran %d times for %s, want 1", r, id)
			}
			if s := skipped.get(id); s != 1 {
				t.Errorf("message %s committed %d times", id, s)
			}
		}
	})
}

// idle reports whether every JetStream consumer of consumer on topic has
// nothing pending and nothing awaiting an ack.
func idle(t *testing.T, node *coord.Node, consumer, topic string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := node.JetStream().Stream(ctx, coord.StreamMessages)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range msg.DurableNames(consumer, topic) {
		c, err := s.Consumer(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
			return false
		}
	}
	return true
}

// TestPoisonDeadLetterAndReplay: a message whose handler always fails is
// delivered exactly MaxDeliver times, then stored as a dead letter with
// the error, consumer and count, and the stream moves on; replaying it
// once the handler is fixed applies it once, and a consumer that handled
// it before does not apply it again. A Permanent error dead-letters at
// once; a malformed message is dead-lettered and cannot be replayed.
func TestPoisonDeadLetterAndReplay(t *testing.T) {
	forStores(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		const maxDeliver = 3
		var healed atomic.Bool
		var tries counter
		e.subscribe(t, "billing", topic, func(d *msg.Delivery) error {
			tries.add(d.ID)
			switch {
			case string(d.Payload) == "poison" && !healed.Load():
				return fmt.Errorf("cannot bill %q", d.Payload)
			case string(d.Payload) == "undecodable":
				return msg.Permanent(errors.New("bad payload"))
			}
			return nil
		}, msg.WithMaxDeliver(maxDeliver))
		e.subscribe(t, "audit", topic, ok)
		e.relay(t)
		poison := e.publish(t, true, msg.Message{Topic: topic, Key: "acct-1", Payload: []byte("poison")})[0]
		after := e.publish(t, true, msg.Message{Topic: topic, Key: "acct-1", Payload: []byte("after")})[0]
		perm := e.publish(t, true, msg.Message{Topic: topic, Payload: []byte("undecodable")})[0]
		raw := nats.NewMsg("concord.msg." + topic + ".u")
		raw.Data = []byte("no envelope")
		if _, err := e.node.JetStream().PublishMsg(ctx, raw); err != nil {
			t.Fatal(err)
		}

		// poison and perm by billing; the malformed one by both names.
		var dls []msg.DeadLetter
		byID := map[string]msg.DeadLetter{}
		var malformed []msg.DeadLetter
		waitFor(t, 20*time.Second, "four dead letters", func() bool {
			var err error
			dls, err = msg.DeadLetters(ctx, e.node, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			return len(dls) >= 4
		})
		waitFor(t, 10*time.Second, "audit applied the three valid messages", func() bool {
			return len(byConsumer(t, e.effects(t))["audit"]) == 3
		})
		time.Sleep(300 * time.Millisecond) // no further deliveries
		if n := tries.get(poison); n != maxDeliver {
			t.Errorf("poison tried %d times, want %d", n, maxDeliver)
		}
		if n := tries.get(perm); n != 1 {
			t.Errorf("permanent failure tried %d times, want 1", n)
		}
		for _, d := range dls {
			if d.Topic == "" {
				malformed = append(malformed, d)
				continue
			}
			byID[d.ID] = d
		}
		if len(dls) != 4 || len(malformed) != 2 || len(byID) != 2 {
			t.Fatalf("dead letters %+v, want poison, permanent and malformed twice", dls)
		}
		d := byID[poison]
		if d.Consumer != "billing" || d.Deliveries != maxDeliver || d.Topic != topic || d.Key != "acct-1" ||
			string(d.Payload) != "poison" || !strings.Contains(d.Error, `cannot bill "poison"`) {
			t.Errorf("poison dead letter %+v", d)
		}
		if d := byID[perm]; d.Deliveries != 1 || !strings.Contains(d.Error, "bad payload") {
			t.Errorf("permanent dead letter %+v", d)
		}
		if m := malformed; !strings.Contains(m[0].Error, "malformed") || m[0].Consumer == m[1].Consumer {
			t.Errorf("malformed dead letters %+v", m)
		}
		if err := msg.Replay(ctx, e.node, malformed[0].Seq); !errors.Is(err, msg.ErrInvalid) {
			t.Errorf("Replay(malformed) = %v, want ErrInvalid", err)
		}
		billing := byConsumer(t, e.effects(t))["billing"]
		if _, ok := billing[after]; !ok || len(billing) != 1 {
			t.Errorf("billing applied %v, want only %s (the partition moves on)", billing, after)
		}

		healed.Store(true)
		if err := msg.Replay(ctx, e.node, d.Seq); err != nil {
			t.Fatal(err)
		}
		if err := msg.Replay(ctx, e.node, d.Seq); !errors.Is(err, msg.ErrNotFound) {
			t.Errorf("second Replay = %v, want ErrNotFound", err)
		}
		waitFor(t, 10*time.Second, "billing applied the replayed message", func() bool {
			_, ok := byConsumer(t, e.effects(t))["billing"][poison]
			return ok
		})
		waitFor(t, 10*time.Second, "audit acknowledged the replay", func() bool { return idle(t, e.node, "audit", topic) })
		all := byConsumer(t, e.effects(t)) // fails on any double effect
		if len(all["audit"]) != 3 || len(all["billing"]) != 2 {
			t.Errorf("audit applied %d, billing %d; want 3 and 2", len(all["audit"]), len(all["billing"]))
		}
		for _, m := range malformed {
			if err := msg.Discard(ctx, e.node, m.Seq); err != nil {
				t.Fatal(err)
			}
		}
		if err := msg.Discard(ctx, e.node, malformed[0].Seq); !errors.Is(err, msg.ErrNotFound) {
			t.Errorf("second Discard = %v, want ErrNotFound", err)
		}
		left, err := msg.DeadLetters(ctx, e.node, 0, 100)
		if err != nil || len(left) != 1 || left[0].ID != perm {
			t.Errorf("dead letters left %+v, %v; want only the permanent one", left, err)
		}
	})
}

// TestPerKeyOrder: with two subscribers under one name, concurrency and
// random handler failures (redeliveries), each key's messages are applied
// in commit order, each exactly once.
func TestPerKeyOrder(t *testing.T) {
	forStores(t, func(t *testing.T, e *env) {
		const keys, perKey = 6, 15
		var mu sync.Mutex
		rng := rand.New(rand.NewPCG(1, 2))
		fail := func(d *msg.Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			if d.Deliveries == 1 && rng.IntN(4) == 0 {
				return errors.New("transient")
			}
			return nil
		}
		e.subscribe(t, "c1", topic, fail, msg.WithConcurrency(4))
		e.subscribe(t, "c1", topic, fail, msg.WithConcurrency(4))
		e.relay(t)
		for i := range perKey {
			var ms []msg.Message
			for k := range keys {
				ms = append(ms, msg.Message{Topic: topic, Key: keyName(k), Payload: []byte(strconv.Itoa(i))})
			}
			e.publish(t, true, ms[:keys/2]...)
			e.publish(t, true, ms[keys/2:]...)
		}
		waitFor(t, 60*time.Second, "every message applied", func() bool { return len(e.effects(t)) >= keys*perKey })
		eff := e.effects(t)
		byConsumer(t, eff)
		next := map[string]int{}
		for _, a := range eff {
			i, _ := strconv.Atoi(a.Payload)
			if i != next[a.Key] {
				t.Errorf("key %s: applied #%d, want #%d", a.Key, i, next[a.Key])
			}
			next[a.Key] = i + 1
		}
		if len(eff) != keys*perKey {
			t.Errorf("%d effects, want %d", len(eff), keys*perKey)
		}
		for k := range keys {
			if next[keyName(k)] != perKey {
				t.Errorf("key %q: %d messages applied, want %d", keyName(k), next[keyName(k)], perKey)
			}
		}
	})
}

// keyName returns a key with spaces, line breaks and non-ASCII runes,
// which must reach the handler unchanged.
func keyName(k int) string { return " key\r\n" + strconv.Itoa(k) + " ü:* > " }

// TestSharedNameAndFanOut: two subscribers under one name share the
// messages with no message applied twice; another name receives every
// message too.
func TestSharedNameAndFanOut(t *testing.T) {
	forStores(t, func(t *testing.T, e *env) {
		const n = 60
		var a1, a2 atomic.Int64
		e.subscribe(t, "shipping", topic, func(*msg.Delivery) error { a1.Add(1); return nil })
		e.subscribe(t, "shipping", topic, func(*msg.Delivery) error { a2.Add(1); return nil })
		e.subscribe(t, "mail", topic, ok)
		e.subscribe(t, "mail", "orders.cancelled", ok) // another topic: gets nothing
		e.relay(t)
		for i := range n {
			key := ""
			if i%3 != 0 {
				key = "k" + strconv.Itoa(i)
			}
			e.publish(t, true, msg.Message{Topic: topic, Key: key, Payload: []byte(strconv.Itoa(i))})
		}
		waitFor(t, 30*time.Second, "both names applied every message", func() bool { return len(e.effects(t)) >= 2*n })
		time.Sleep(200 * time.Millisecond)
		got := byConsumer(t, e.effects(t))
		if len(got["shipping"]) != n || len(got["mail"]) != n || len(e.effects(t)) != 2*n {
			t.Errorf("shipping applied %d, mail %d, total %d; want %d, %d, %d", len(got["shipping"]), len(got["mail"]), len(e.effects(t)), n, n, 2*n)
		}
		if a1.Load() == 0 || a2.Load() == 0 {
			t.Errorf("one subscriber did all the work: %d and %d", a1.Load(), a2.Load())
		}
	})
}

// TestInvalidInput: bad topics, keys, payloads and names are refused
// before anything is written.
func TestInvalidInput(t *testing.T) {
	for _, tc := range []struct {
		topic string
		ok    bool
	}{
		{"orders", true}, {"orders.placed", true}, {"a_b-c.d9", true},
		{"", false}, {"Orders", false}, {"orders.", false}, {".orders", false}, {"a..b", false},
		{"orders.*", false}, {"orders.>", false}, {"a b", false}, {"a\r\nb", false}, {strings.Repeat("a", 129), false},
		{"a~b", false}, {"ä", false},
	} {
		if err := msg.CheckTopic(tc.topic); (err == nil) != tc.ok || err != nil && !errors.Is(err, msg.ErrInvalid) {
			t.Errorf("CheckTopic(%q) = %v, want ok=%v", tc.topic, err, tc.ok)
		}
	}
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"billing", true}, {"billing-2", true}, {"9x", true},
		{"", false}, {"-x", false}, {"Billing", false}, {"a_b", false}, {"a.b", false}, {"a*", false}, {strings.Repeat("a", 65), false},
	} {
		if err := msg.CheckConsumerName(tc.name); (err == nil) != tc.ok {
			t.Errorf("CheckConsumerName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	node := nodetest.Open(t)
	db := openSQLiteDB(t, t.TempDir())
	ctx := context.Background()
	store, err := msg.SQL(db, tcc.SQLite())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateTables(ctx); err != nil {
		t.Fatal(err)
	}
	ob := msg.NewOutbox(store)
	for _, m := range []msg.Message{
		{Topic: "bad topic"},
		{Topic: topic, Key: "nul\x00byte"},
		{Topic: topic, Key: "bad\xffutf8"},
		{Topic: topic, Key: strings.Repeat("k", msg.MaxKeyLen+1)},
		{Topic: topic, Payload: make([]byte, msg.MaxPayload+1)},
	} {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ob.Add(ctx, tx, m); !errors.Is(err, msg.ErrInvalid) {
			t.Errorf("Add(topic %q, key %q) = %v, want ErrInvalid", m.Topic, m.Key, err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+msg.OutboxTable).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d outbox rows after refused adds (%v)", n, err)
	}
	h := func(context.Context, *sql.Tx, *msg.Delivery) error { return nil }
	for _, c := range [][2]string{{"Bad", topic}, {"ok", "bad topic"}} {
		if _, err := msg.Subscribe(ctx, node, store, c[0], c[1], h); !errors.Is(err, msg.ErrInvalid) {
			t.Errorf("Subscribe(%q, %q) = %v, want ErrInvalid", c[0], c[1], err)
		}
	}
	if _, err := msg.SQL(nil, tcc.SQLite()); !errors.Is(err, msg.ErrInvalid) {
		t.Errorf("SQL(nil) = %v", err)
	}
	if _, err := msg.SQL(db, tcc.Dialect{}); !errors.Is(err, msg.ErrInvalid) {
		t.Errorf("SQL(zero dialect) = %v", err)
	}
}

// TestRelayWakesOnCommit: with a sweep interval of an hour, a committed
// message is still relayed at once: Add wakes the relay even when the
// commit comes later and nobody calls Notify.
func TestRelayWakesOnCommit(t *testing.T) {
	node := nodetest.Open(t)
	db, err := localstore.Open(t.TempDir(), localstore.WithGCInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ob := msg.NewOutbox(msg.Badger(db))
	r := msg.StartRelay(node, ob, msg.WithSweepInterval(time.Hour))
	defer r.Close()
	time.Sleep(50 * time.Millisecond) // the relay's first look is over
	for i := range 3 {
		err := db.Update(func(tx *localstore.Tx) error {
			_, err := ob.Add(context.Background(), tx, msg.Message{Topic: topic, Payload: []byte("x")})
			time.Sleep(20 * time.Millisecond) // the commit comes after the wake
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the message relayed without Notify", func() bool {
			return streamMsgs(t, node, coord.StreamMessages) == uint64(i+1)
		})
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Done():
	default:
		t.Error("Done not closed after Close")
	}
}

// TestCloseAfterNodeLoss: a relay and a subscription whose node closed
// under them keep their rows, and stop on Close without leaking
// goroutines (goleak in TestMain).
func TestCloseAfterNodeLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	node, err := coord.Open(ctx, coord.WithDataDir(t.TempDir()), nodetest.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	e := openSQLiteEnv(t, node)
	sub := e.subscribe(t, "c1", topic, ok)
	r := e.relay(t)
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}
	e.publish(t, true, msg.Message{Topic: topic, Key: "k", Payload: []byte("kept")})
	time.Sleep(300 * time.Millisecond) // the relay tries and fails
	done := make(chan struct{})
	go func() {
		_ = r.Close()
		_ = sub.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close hangs after the node closed")
	}
	if n := e.outboxRows(t); n != 1 {
		t.Errorf("%d outbox rows after failed publishes, want 1", n)
	}
}
