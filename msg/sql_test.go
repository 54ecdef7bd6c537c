package msg_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/msg"
	"github.com/concordrpc/concord/tcc"
)

// The PostgreSQL dialect's DDL is checked as text here; with a server
// (pgtest), every store test runs on it too.
func TestPostgreSQLDDL(t *testing.T) {
	t.Parallel()
	got := strings.Join(msg.DDL(tcc.PostgreSQL()), ";\n")
	want := "CREATE TABLE IF NOT EXISTS concord_msg_outbox (seq BIGSERIAL PRIMARY KEY, id CHAR(32) NOT NULL UNIQUE, topic VARCHAR(128) NOT NULL, okey VARCHAR(1024) NOT NULL, payload BYTEA NOT NULL, written_at BIGINT NOT NULL);\n" +
		"CREATE TABLE IF NOT EXISTS concord_msg_inbox (consumer VARCHAR(64) NOT NULL, id CHAR(32) NOT NULL, handled_at BIGINT NOT NULL, PRIMARY KEY (consumer, id));\n" +
		"CREATE INDEX IF NOT EXISTS concord_msg_inbox_handled ON concord_msg_inbox (consumer, handled_at)"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if msg.DDL(tcc.Dialect{}) != nil {
		t.Error("DDL of a zero dialect")
	}
}

// TestInboxCleanup: a SQL subscription deletes its inbox rows once they
// are older than the retention, and only its own.
func TestInboxCleanup(t *testing.T) {
	node := nodetest.Open(t)
	db := openSQLiteDB(t, t.TempDir())
	e := sqlEnv(t, node, db, tcc.SQLite())
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e.subscribe(t, "c1", topic, ok, msg.WithClock(clock), msg.WithInboxRetention(time.Hour), msg.WithCleanEvery(20*time.Millisecond))
	e.subscribe(t, "c2", topic, ok, msg.WithClock(clock), msg.WithInboxRetention(48*time.Hour), msg.WithCleanEvery(20*time.Millisecond))
	e.relay(t)
	for range 5 {
		e.publish(t, true, msg.Message{Topic: topic, Payload: []byte("x")})
	}
	count := func(consumer string) int {
		var n int
		if err := db.QueryRowContext(context.Background(), "SELECT count(*) FROM "+msg.InboxTable+" WHERE consumer = ?", consumer).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, 10*time.Second, "both consumers handled every message", func() bool { return count("c1") == 5 && count("c2") == 5 })
	time.Sleep(100 * time.Millisecond)
	if count("c1") != 5 {
		t.Fatal("inbox rows deleted before their retention")
	}
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	waitFor(t, 10*time.Second, "c1's inbox cleaned", func() bool { return count("c1") == 0 })
	if n := count("c2"); n != 5 {
		t.Errorf("c2 has %d inbox rows, want 5 (its retention is longer)", n)
	}
}
