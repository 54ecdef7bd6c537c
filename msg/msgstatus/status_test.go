package msgstatus_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	_ "modernc.org/sqlite"

	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/msg"
	"github.com/concordrpc/concord/msg/msgstatus"
	"github.com/concordrpc/concord/tcc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const topic = "orders.placed"

// TestRead reads the messaging status of a node with real outboxes,
// relays, consumers and dead letters: a consumer whose message is being
// redelivered shows it in flight and redelivered; a poison message counts
// as a dead letter; a SQLite outbox whose first row cannot be published
// shows its depth and age, a Badger outbox that drained shows none; a
// closed relay's outbox is no longer listed.
func TestRead(t *testing.T) {
	ctx := nodetest.Within(t, 30*time.Second)
	node := nodetest.Open(t)

	// A SQLite outbox with a row the relay cannot publish (a topic Add
	// would refuse): it stays, as a corrupt row does.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "app.db")+"?_txlock=immediate&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sqlStore, err := msg.SQL(db, tcc.SQLite())
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlStore.CreateTables(ctx); err != nil {
		t.Fatal(err)
	}
	written := time.Now().Add(-3 * time.Second)
	if _, err := db.ExecContext(ctx, "INSERT INTO "+msg.OutboxTable+" (id, topic, okey, payload, written_at) VALUES (?, ?, '', x'', ?)",
		"0123456789abcdef0123456789abcdef", "Not A Topic", written.UnixNano()); err != nil {
		t.Fatal(err)
	}
	sqlRelay := msg.StartRelay(node, msg.NewOutbox(sqlStore), msg.WithSweepInterval(50*time.Millisecond))
	defer sqlRelay.Close()

	local, err := localstore.Open(t.TempDir(), localstore.WithGCInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	store := msg.Badger(local)
	ob := msg.NewOutbox(store)
	relay := msg.StartRelay(node, ob)
	defer relay.Close()

	second := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	sub, err := msg.Subscribe(ctx, node, store, "billing", topic, func(ctx context.Context, _ *localstore.Tx, d *msg.Delivery) error {
		switch {
		case string(d.Payload) == "poison":
			return msg.Permanent(errors.New("cannot bill"))
		case string(d.Payload) == "slow" && d.Deliveries == 1:
			return errors.New("not yet")
		case string(d.Payload) == "slow":
			close(second)
			select {
			case <-release:
			case <-ctx.Done():
			}
			return errors.New("released")
		}
		return nil
	}, msg.WithBackoff(10*time.Millisecond, 10*time.Millisecond), msg.WithAckWait(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for _, p := range []string{"ok", "poison", "slow"} {
		if err := local.Update(func(tx *localstore.Tx) error {
			_, err := ob.Add(ctx, tx, msg.Message{Topic: topic, Payload: []byte(p)})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		ob.Notify()
	}
	select {
	case <-second:
	case <-ctx.Done():
		t.Fatal("the slow message was not delivered twice")
	}

	// Only the slow message is in flight and redelivered, once the
	// poison one's dead letter is stored and its source terminated.
	want := msgstatus.Consumer{Name: "billing", Topic: topic, Partitions: msg.Partitions + 1, Pending: 0, InFlight: 1, Redelivered: 1}
	var st *msgstatus.Status
	for i := 0; ; i++ {
		st = msgstatus.Read(ctx, node, time.Second)
		if st.DeadLetters == 1 && len(st.Outboxes) == 2 && st.Outboxes[1].Rows == 0 && len(st.Consumers) == 1 && st.Consumers[0] == want {
			break
		}
		if i == 500 {
			t.Fatalf("status %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st.ConsumersUnknown != "" || st.DeadLettersUnknown != "" {
		t.Fatalf("unknown parts: %q, %q", st.ConsumersUnknown, st.DeadLettersUnknown)
	}
	o := st.Outboxes[0]
	if o.Store != "sqlite" || o.Instance != node.Name() || o.Rows != 1 || !o.Oldest.Equal(written) ||
		o.OldestAgeMillis < 3000 || o.OldestAgeMillis > 60_000 || o.Unknown != "" {
		t.Errorf("SQLite outbox %+v, want one row written at %v", o, written)
	}
	if o := st.Outboxes[1]; o.Store != "badger" || o.Rows != 0 || !o.Oldest.IsZero() || o.OldestAgeMillis != 0 {
		t.Errorf("Badger outbox %+v, want empty", o)
	}

	_ = sqlRelay.Close()
	if st := msgstatus.Read(ctx, node, time.Second); len(st.Outboxes) != 1 || st.Outboxes[0].Store != "badger" {
		t.Errorf("outboxes after closing the SQLite relay: %+v", st.Outboxes)
	}
}

// TestReadUnanswered: parts that cannot answer in time are unknown, with
// the reason.
func TestReadUnanswered(t *testing.T) {
	node := nodetest.Open(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	st := msgstatus.Read(ctx, node, time.Second)
	if st.ConsumersUnknown == "" || st.DeadLettersUnknown == "" || st.Consumers == nil || st.Outboxes == nil {
		t.Fatalf("status %+v", st)
	}
}
