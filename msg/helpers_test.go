package msg_test

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/internal/pgtest"
	"github.com/concordrpc/concord/msg"
	"github.com/concordrpc/concord/tcc"
)

// fast are options that keep retries short in tests.
func fast() []msg.Option {
	return []msg.Option{
		msg.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		msg.WithAckWait(time.Second),
		msg.WithSweepInterval(200 * time.Millisecond),
	}
}

// applied is one effect a handler committed.
type applied struct {
	Consumer, ID, Key string
	Payload           string
}

// env is an outbox and inbox on one real store, with a business table of
// applied effects that handlers write in their local transaction.
type env struct {
	name string
	node *coord.Node
	// publish runs one local transaction that adds ms to the outbox and
	// commits it (commit) or rolls it back, and returns the IDs.
	publish func(t *testing.T, commit bool, ms ...msg.Message) []string
	// relay starts a relay on the outbox.
	relay func(t *testing.T, opts ...msg.Option) *msg.Relay
	// outboxRows counts the rows waiting in the outbox.
	outboxRows func(t *testing.T) int
	// stats is the outbox's Stats.
	stats func(ctx context.Context) (msg.OutboxStats, error)
	// subscribe subscribes consumer to topic; the handler records an
	// applied effect in its transaction unless fn returns an error.
	subscribe func(t *testing.T, consumer, topic string, fn func(d *msg.Delivery) error, opts ...msg.Option) *msg.Subscription
	// effects returns the committed effects, in the order they committed.
	effects func(t *testing.T) []applied
}

func openBadgerEnv(t *testing.T, node *coord.Node) *env {
	t.Helper()
	return badgerEnvAt(t, node, t.TempDir())
}

// badgerEnvAt opens the Badger store in dir (closed at cleanup).
func badgerEnvAt(t *testing.T, node *coord.Node, dir string) *env {
	t.Helper()
	db, err := localstore.Open(dir, localstore.WithGCInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	store := msg.Badger(db)
	ob := msg.NewOutbox(store)
	return &env{
		name: "badger",
		node: node,
		publish: func(t *testing.T, commit bool, ms ...msg.Message) []string {
			t.Helper()
			var ids []string
			errRollback := errors.New("roll back")
			err := db.Update(func(tx *localstore.Tx) error {
				ids = ids[:0]
				for _, m := range ms {
					id, err := ob.Add(context.Background(), tx, m)
					if err != nil {
						return err
					}
					ids = append(ids, id)
				}
				if !commit {
					return errRollback
				}
				return nil
			})
			if commit && err != nil || !commit && !errors.Is(err, errRollback) {
				t.Fatalf("publish: %v", err)
			}
			ob.Notify()
			return ids
		},
		relay: relayOf(node, ob),
		stats: ob.Stats,
		outboxRows: func(t *testing.T) int {
			n := 0
			if err := db.Scan([]byte("concord/msg/out/"), func(_, _ []byte) error { n++; return nil }); err != nil {
				t.Fatal(err)
			}
			return n
		},
		subscribe: func(t *testing.T, consumer, topic string, fn func(d *msg.Delivery) error, opts ...msg.Option) *msg.Subscription {
			t.Helper()
			h := func(_ context.Context, tx *localstore.Tx, d *msg.Delivery) error {
				if err := fn(d); err != nil {
					return err
				}
				return badgerEffect(tx, consumer, d)
			}
			return subscribe(t, node, store, consumer, topic, h, opts)
		},
		effects: func(t *testing.T) []applied {
			var out []applied
			if err := db.Scan([]byte("effect/"), func(_, v []byte) error {
				var a applied
				if err := json.Unmarshal(v, &a); err != nil {
					return err
				}
				out = append(out, a)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			return out
		},
	}
}

// openSQLiteDB opens a SQLite database file in dir with the outbox,
// inbox and effect tables.
func openSQLiteDB(t *testing.T, dir string) *sql.DB {
	t.Helper()
	dsn := "file:" + filepath.Join(dir, "app.db") + "?_txlock=immediate&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func openSQLiteEnv(t *testing.T, node *coord.Node) *env {
	t.Helper()
	return sqlEnv(t, node, openSQLiteDB(t, t.TempDir()), tcc.SQLite())
}

func sqlEnv(t *testing.T, node *coord.Node, db *sql.DB, dialect tcc.Dialect) *env {
	t.Helper()
	ctx := context.Background()
	store, err := msg.SQL(db, dialect)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateTables(ctx); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateTables(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	ph := func(i int) string {
		if dialect.Name() == "postgres" {
			return fmt.Sprintf("$%d", i)
		}
		return "?"
	}
	serial := "INTEGER PRIMARY KEY AUTOINCREMENT"
	if dialect.Name() == "postgres" {
		serial = "BIGSERIAL PRIMARY KEY"
	}
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS effects (n " + serial + ", consumer TEXT NOT NULL, id TEXT NOT NULL, okey TEXT NOT NULL, payload TEXT NOT NULL)",
		"CREATE TABLE IF NOT EXISTS business (id TEXT PRIMARY KEY)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	ob := msg.NewOutbox(store)
	return &env{
		name: dialect.Name(),
		node: node,
		publish: func(t *testing.T, commit bool, ms ...msg.Message) []string {
			t.Helper()
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback() }()
			var ids []string
			for _, m := range ms {
				id, err := ob.Add(ctx, tx, m)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.ExecContext(ctx, "INSERT INTO business (id) VALUES ("+ph(1)+")", id); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			if commit {
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				ob.Notify()
			}
			return ids
		},
		relay: relayOf(node, ob),
		stats: ob.Stats,
		outboxRows: func(t *testing.T) int {
			var n int
			if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+msg.OutboxTable).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		},
		subscribe: func(t *testing.T, consumer, topic string, fn func(d *msg.Delivery) error, opts ...msg.Option) *msg.Subscription {
			t.Helper()
			h := func(ctx context.Context, tx *sql.Tx, d *msg.Delivery) error {
				if err := fn(d); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, "INSERT INTO effects (consumer, id, okey, payload) VALUES ("+ph(1)+", "+ph(2)+", "+ph(3)+", "+ph(4)+")",
					consumer, d.ID, d.Key, string(d.Payload))
				return err
			}
			return subscribe(t, node, store, consumer, topic, h, opts)
		},
		effects: func(t *testing.T) []applied {
			rs, err := db.QueryContext(ctx, "SELECT consumer, id, okey, payload FROM effects ORDER BY n")
			if err != nil {
				t.Fatal(err)
			}
			defer rs.Close()
			var out []applied
			for rs.Next() {
				var a applied
				if err := rs.Scan(&a.Consumer, &a.ID, &a.Key, &a.Payload); err != nil {
					t.Fatal(err)
				}
				out = append(out, a)
			}
			if err := rs.Err(); err != nil {
				t.Fatal(err)
			}
			return out
		},
	}
}

func subscribe[Tx any](t *testing.T, node *coord.Node, store msg.Store[Tx], consumer, topic string, h msg.Handler[Tx], opts []msg.Option) *msg.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := msg.Subscribe(ctx, node, store, consumer, topic, h, append(fast(), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

// forStores runs f in a subtest per store (Badger, SQLite, and
// PostgreSQL when pgtest has a server), each on its own node.
func forStores(t *testing.T, f func(t *testing.T, e *env)) {
	t.Helper()
	opens := []func(*testing.T, *coord.Node) *env{openBadgerEnv, openSQLiteEnv}
	if os.Getenv(pgtest.EnvVar) != "" {
		opens = append(opens, func(t *testing.T, node *coord.Node) *env {
			return sqlEnv(t, node, pgtest.DB(t), tcc.PostgreSQL())
		})
	}
	for _, open := range opens {
		node := nodetest.Open(t)
		e := open(t, node)
		t.Run(e.name, func(t *testing.T) { f(t, e) })
	}
}

// waitFor polls cond every 10ms until it holds or d passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// streamMsgs returns how many messages a stream holds.
func streamMsgs(t *testing.T, node *coord.Node, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := node.JetStream().Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// counter counts per ID, safely.
type counter struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counter) add(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[id]++
	return c.m[id]
}

func (c *counter) get(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[id]
}

// byConsumer counts effects per consumer and per ID, and fails on an ID
// applied twice by one consumer.
func byConsumer(t *testing.T, effects []applied) map[string]map[string]applied {
	t.Helper()
	out := map[string]map[string]applied{}
	for _, a := range effects {
		if out[a.Consumer] == nil {
			out[a.Consumer] = map[string]applied{}
		}
		if _, dup := out[a.Consumer][a.ID]; dup {
			t.Errorf("consumer %s applied message %s (%q) twice", a.Consumer, a.ID, a.Payload)
		}
		out[a.Consumer][a.ID] = a
	}
	return out
}

// badgerEffect records an applied effect of consumer in tx. A counter
// every handler reads and writes keeps effects in commit order (and makes
// concurrent handlers conflict and retry).
func badgerEffect(tx *localstore.Tx, consumer string, d *msg.Delivery) error {
	n := uint64(0)
	v, err := tx.Get([]byte("effect-count"))
	switch {
	case err == nil:
		n = binary.BigEndian.Uint64(v)
	case !errors.Is(err, localstore.ErrNotFound):
		return err
	}
	if err := tx.Set([]byte("effect-count"), binary.BigEndian.AppendUint64(nil, n+1)); err != nil {
		return err
	}
	b, _ := json.Marshal(applied{Consumer: consumer, ID: d.ID, Key: d.Key, Payload: string(d.Payload)})
	return tx.Set(fmt.Appendf(nil, "effect/%020d", n), b)
}

// relayOf returns the function that starts a relay of ob, stopped at
// cleanup.
func relayOf[Tx any](node *coord.Node, ob *msg.Outbox[Tx]) func(t *testing.T, opts ...msg.Option) *msg.Relay {
	return func(t *testing.T, opts ...msg.Option) *msg.Relay {
		r := msg.StartRelay(node, ob, append(fast(), opts...)...)
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
}
