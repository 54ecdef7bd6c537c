package msg_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/msg"
)

// The environment variables that make the test binary run a producer or
// a consumer (in TestMain) instead of the tests, so that a test can kill
// it with SIGKILL. Each holds the Badger directory; childURL holds the
// node's client URL.
const (
	producerEnv = "CONCORD_MSG_TEST_PRODUCER"
	consumerEnv = "CONCORD_MSG_TEST_CONSUMER"
	childURL    = "CONCORD_MSG_TEST_URL"
	// childLife bounds a child that nobody kills.
	childLife = 2 * time.Minute
)

// childNode connects a child process to the test's node.
func childNode(ctx context.Context) *coord.Node {
	n, err := coord.Open(ctx, coord.WithClient([]string{os.Getenv(childURL)}, nodetest.ClientAuth()),
		coord.WithName("child"), nodetest.Quiet())
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	return n
}

func childStore(dir string) *localstore.Store {
	db, err := localstore.Open(dir, localstore.WithGCInterval(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	return db
}

// runProducer commits one message per transaction, all with one key,
// printing "committed <i>" after each commit, with a relay running, until
// it is killed.
func runProducer() {
	ctx := context.Background()
	node := childNode(ctx)
	db := childStore(os.Getenv(producerEnv))
	ob := msg.NewOutbox(msg.Badger(db))
	msg.StartRelay(node, ob)
	// Bounded in case the test that should kill it is gone.
	for i, start := 0, time.Now(); time.Since(start) < childLife; i++ {
		err := db.Update(func(tx *localstore.Tx) error {
			_, err := ob.Add(ctx, tx, msg.Message{Topic: topic, Key: "acct", Payload: []byte(strconv.Itoa(i))})
			return err
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "producer:", err)
			os.Exit(2)
		}
		ob.Notify()
		fmt.Printf("committed %d\n", i)
	}
	os.Exit(2)
}

// runConsumer subscribes "c1" to topic with a handler that writes the
// effect, except that the handler of payload "inside" prints INSIDE and
// hangs before its commit, and the message "committed" prints COMMITTED
// and hangs after its commit, before its ack; it is then killed.
func runConsumer() {
	ctx := context.Background()
	node := childNode(ctx)
	db := childStore(os.Getenv(consumerEnv))
	h := func(_ context.Context, tx *localstore.Tx, d *msg.Delivery) error {
		if string(d.Payload) == "inside" {
			fmt.Println("INSIDE")
			time.Sleep(childLife)
		}
		return badgerEffect(tx, "c1", d)
	}
	_, err := msg.Subscribe(ctx, node, msg.Badger(db), "c1", topic, h,
		msg.WithConcurrency(2), msg.WithAckWait(time.Second),
		msg.WithAfterCommit(func(d *msg.Delivery) bool {
			if string(d.Payload) == "committed" {
				fmt.Println("COMMITTED")
				time.Sleep(childLife)
			}
			return false
		}))
	if err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(2)
	}
	time.Sleep(childLife) // killed long before
	os.Exit(2)
}

// startChild starts the test binary as a child with env set, and returns
// its stdout lines.
func startChild(t *testing.T, node *coord.Node, env string, dir string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+dir, childURL+"="+node.ClientURL())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1024)
	go func(r io.Reader) {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}(out)
	return cmd, lines
}

// kill9 kills the child with SIGKILL and waits for it.
func kill9(t *testing.T, cmd *exec.Cmd, lines <-chan string) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for range lines { // drain until the pipe closes
	}
	_ = cmd.Wait()
}

// TestProducerKilledAfterCommit kills -9 a producer that commits
// messages while its relay publishes them, then starts a relay on its
// store: every message whose commit returned is delivered, none is
// applied or stored twice, and the key's order holds.
func TestProducerKilledAfterCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a producer process")
	}
	node := nodetest.Open(t, coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth())
	dir := t.TempDir()
	cmd, lines := startChild(t, node, producerEnv, dir)
	acked := -1
	timeout := time.After(60 * time.Second)
	for acked < 100 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("producer exited after %d commits", acked+1)
			}
			if n, ok := strings.CutPrefix(l, "committed "); ok {
				acked, _ = strconv.Atoi(n)
			}
		case <-timeout:
			t.Fatalf("producer committed only %d messages in 60s", acked+1)
		}
	}
	kill9(t, cmd, lines)
	published := streamMsgs(t, node, coord.StreamMessages)

	e := badgerEnvAt(t, node, dir)
	left := e.outboxRows(t)
	e.subscribe(t, "c1", topic, ok)
	e.relay(t)
	waitFor(t, 60*time.Second, "every committed message applied", func() bool {
		return e.outboxRows(t) == 0 && uint64(len(e.effects(t))) == streamMsgs(t, node, coord.StreamMessages) &&
			idle(t, node, "c1", topic)
	})
	eff := e.effects(t)
	byConsumer(t, eff)
	for i, a := range eff {
		if a.Payload != strconv.Itoa(i) {
			t.Fatalf("effect %d is message %s: lost, duplicated or out of order", i, a.Payload)
		}
	}
	if len(eff) <= acked {
		t.Errorf("%d messages applied, but %d commits returned", len(eff), acked+1)
	}
	t.Logf("killed after %d acknowledged commits; %d published before the kill, %d rows left; %d applied",
		acked+1, published, left, len(eff))
}

// TestConsumerKilled kills -9 a consumer with one handler inside its
// transaction and another after its commit but before its ack; a new
// consumer on its store, under the same name, applies the first once and
// answers the second from the inbox without running its handler.
func TestConsumerKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a consumer process")
	}
	node := nodetest.Open(t, coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth())
	producer := openSQLiteEnv(t, node)
	keyA, keyB := "a", "b"
	for i := 0; msg.Partition(keyA) == msg.Partition(keyB); i++ {
		keyB = "b" + strconv.Itoa(i)
	}
	inside := producer.publish(t, true, msg.Message{Topic: topic, Key: keyA, Payload: []byte("inside")})[0]
	committed := producer.publish(t, true, msg.Message{Topic: topic, Key: keyB, Payload: []byte("committed")})[0]
	producer.relay(t)

	dir := t.TempDir()
	cmd, lines := startChild(t, node, consumerEnv, dir)
	seen := map[string]bool{}
	timeout := time.After(60 * time.Second)
	for !seen["INSIDE"] || !seen["COMMITTED"] {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("consumer exited; saw %v", seen)
			}
			seen[l] = true
		case <-timeout:
			t.Fatalf("consumer printed only %v in 60s", seen)
		}
	}
	kill9(t, cmd, lines)

	e := badgerEnvAt(t, node, dir)
	var runs counter
	e.subscribe(t, "c1", topic, func(d *msg.Delivery) error { runs.add(d.ID); return nil })
	waitFor(t, 30*time.Second, "both messages acknowledged", func() bool {
		return len(e.effects(t)) >= 2 && idle(t, node, "c1", topic)
	})
	got := byConsumer(t, e.effects(t))["c1"]
	if len(got) != 2 || got[inside].Payload != "inside" || got[committed].Payload != "committed" {
		t.Errorf("applied %+v, want each message once", got)
	}
	if r := runs.get(committed); r != 0 {
		t.Errorf("handler ran %d times for the message committed before the kill, want 0", r)
	}
	if r := runs.get(inside); r != 1 {
		t.Errorf("handler ran %d times for the message killed inside its handler, want 1", r)
	}
}
