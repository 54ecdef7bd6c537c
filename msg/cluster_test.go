package msg_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/internal/clustertest"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/msg"
)

// TestClusterNodeKilledDuringStream runs a producer and a consumer, each
// on its own client-mode connection to a three-node cluster, and kill -9s
// one node while a steady stream of messages is committed (and restarts
// it later). Every message committed to the outbox is applied exactly
// once: none lost (the streams are R3, the relay republishes what was not
// acknowledged), none twice (the duplicate window and the inbox).
func TestClusterNodeKilledDuringStream(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node cluster in child processes")
	}
	c := clustertest.New(t, 3)
	c.Start(t)
	open := func(name string) *coord.Node {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n, err := coord.Open(ctx, coord.WithClient(c.URLs(), nodetest.ClientAuth()), coord.WithName(name), nodetest.Quiet())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close() })
		return n
	}
	producer := openBadgerEnv(t, open("producer"))
	consumer := openBadgerEnv(t, open("consumer"))
	producer.relay(t)
	consumer.subscribe(t, "ledger", "payments.made", func(*msg.Delivery) error { return nil })

	const total = 300
	var ids []string
	start := time.Now()
	for i := range total {
		if i == total/3 {
			c.Nodes[1].Kill9()
			t.Logf("killed %s after %d messages", c.Nodes[1].Name, i)
		}
		if i == 2*total/3 {
			c.Restart(t, c.Nodes[1])
			t.Logf("restarted %s after %d messages", c.Nodes[1].Name, i)
		}
		ids = append(ids, producer.publish(t, true, msg.Message{
			Topic: "payments.made", Key: fmt.Sprintf("account-%d", i%7), Payload: []byte(fmt.Sprint(i)),
		})...)
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("committed %d messages in %v", len(ids), time.Since(start).Round(time.Millisecond))
	waitFor(t, 60*time.Second, "every committed message applied", func() bool {
		return len(consumer.effects(t)) >= total
	})
	got := byConsumer(t, consumer.effects(t))["ledger"] // fails on an ID applied twice
	for i, id := range ids {
		if _, ok := got[id]; !ok {
			t.Errorf("message %d (%s) was committed and never applied", i, id)
		}
	}
	if len(got) != total {
		t.Fatalf("applied %d distinct messages, committed %d", len(got), total)
	}
	waitFor(t, 30*time.Second, "the outbox empty", func() bool { return producer.outboxRows(t) == 0 })
}
