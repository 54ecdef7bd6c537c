// Command msgbench measures durable messages through Concord's outbox
// against raw JetStream publish and consume with the same durability, in
// one run:
//
//	cd bench && go run ./cmd/msgbench [flags]
//
// Every row runs on one embedded node in this process that fsyncs every
// JetStream write (Concord's default). Each worker publishes one event and
// waits until it was handled before it publishes the next, so a row
// reports events per second end to end and the publish-to-handle latency
// of one event (p50, p99) at each concurrency.
//
//   - raw JetStream: a plain file stream; the worker publishes and waits
//     for the fsynced PubAck; a durable pull consumer receives the message
//     and acknowledges it; the worker is woken on receipt.
//   - outbox: the producer commits an outbox row in a synced Badger
//     transaction (its own store); the relay publishes it (fsynced, with
//     the row's ID as the dedupe ID) and deletes the row (synced); a
//     consumer under one name receives it, commits its effect and inbox
//     row in a synced Badger transaction (another store), and acks; the
//     worker is woken when the handler's transaction committed
//     (msg.WithMetrics). Messages without a key (handled concurrently)
//     and with a key per worker (16 ordered partitions) are separate rows.
//
// The outbox rows are compared with the raw row at the same concurrency.
// The last rows measure the durable writes an outbox event is made of,
// alone, at the highest concurrency, and the rate they bound.
// The target: at least half of the raw JetStream rate, and a p50
// latency of at most 5 ms.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/bench/internal/closedloop"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/msg"
)

func main() {
	duration := flag.Duration("duration", 3*time.Second, "measured duration of each row")
	warmup := flag.Duration("warmup", time.Second, "warm-up before each row")
	conc := flag.String("concurrency", "1,32", "comma-separated numbers of events in flight (workers)")
	flag.Parse()
	counts, err := closedloop.ParseCounts(*conc)
	if err != nil {
		fatal(fmt.Errorf("-concurrency: %w", err))
	}
	dir, err := os.MkdirTemp("", "msgbench")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	node, err := coord.Open(ctx, coord.WithDataDir(filepath.Join(dir, "node")), coord.WithLogger(quiet))
	if err != nil {
		fatal(err)
	}
	defer node.Close()
	workers := slices.Max(counts)
	raw, err := startRaw(ctx, node, workers)
	if err != nil {
		fatal(err)
	}
	defer raw.close()
	ob, err := startOutbox(ctx, node, filepath.Join(dir, "producer"), filepath.Join(dir, "consumer"), workers)
	if err != nil {
		fatal(err)
	}
	defer ob.close()

	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROW\tCONCURRENCY\tEVENTS/S\tP50\tP99\tOUTBOX/RAW")
	for _, n := range counts {
		r, err := closedloop.Run(n, *warmup, *duration, raw.event)
		if err != nil {
			fatal(fmt.Errorf("raw JetStream, concurrency %d: %w", n, err))
		}
		fmt.Fprintf(tw, "raw JetStream publish+consume (fsynced)\t%d\t%.0f\t%v\t%v\t\n", n, r.PerSecond, r.P50, r.P99)
		for _, keyed := range []bool{false, true} {
			o, err := closedloop.Run(n, *warmup, *duration, func(ctx context.Context, w int) error { return ob.event(ctx, w, keyed) })
			if err != nil {
				fatal(fmt.Errorf("outbox, keyed %v, concurrency %d: %w", keyed, n, err))
			}
			name := "outbox, no key (Badger, synced)"
			if keyed {
				name = "outbox, key per worker (Badger, synced)"
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%v\t%v\t%.2fx\n", name, n, o.PerSecond, o.P50, o.P99, o.PerSecond/r.PerSecond)
			fmt.Fprintf(os.Stderr, "concurrency %d, keyed %v: outbox %.0f/s, raw %.0f/s\n", n, keyed, o.PerSecond, r.PerSecond)
		}
	}
	if err := boundRows(ctx, tw, node, filepath.Join(dir, "raw-badger"), workers, *warmup, *duration); err != nil {
		fatal(err)
	}
	tw.Flush()
}

// boundRows prints the durable writes an outbox event is made of, alone,
// at the highest concurrency: a fsynced JetStream publish (the relay's)
// and a synced Badger commit (the producer's and the consumer's, on the
// path of each event; the relay's delete of the row, one commit per
// batch, is off it), and the event rate they bound on this disk.
func boundRows(ctx context.Context, tw io.Writer, node *coord.Node, dir string, workers int, warmup, duration time.Duration) error {
	js := node.JetStream()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "MSGBENCH_PUB", Subjects: []string{"msgbenchpub.>"}, Storage: jetstream.FileStorage, MaxMsgs: 100000}); err != nil {
		return err
	}
	store, err := localstore.Open(dir, localstore.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return err
	}
	defer store.Close()
	publish, err := closedloop.Run(workers, warmup, duration, func(ctx context.Context, w int) error {
		_, err := js.Publish(ctx, "msgbenchpub."+strconv.Itoa(w), []byte("x"))
		return err
	})
	if err != nil {
		return fmt.Errorf("raw publish: %w", err)
	}
	var n atomic.Int64
	commit, err := closedloop.Run(workers, warmup, duration, func(ctx context.Context, w int) error {
		return store.Set([]byte("k"+strconv.FormatInt(n.Add(1), 10)), []byte("x"))
	})
	if err != nil {
		return fmt.Errorf("raw commit: %w", err)
	}
	fmt.Fprintf(tw, "JetStream publish alone (fsynced)\t%d\t%.0f\t%v\t%v\t\n", workers, publish.PerSecond, publish.P50, publish.P99)
	fmt.Fprintf(tw, "Badger commit alone (synced)\t%d\t%.0f\t%v\t%v\t\n", workers, commit.PerSecond, commit.P50, commit.P99)
	fmt.Fprintf(tw, "bound: 1/(1/publish+2/commit)\t%d\t%.0f\t\t\t\n", workers, 1/(1/publish.PerSecond+2/commit.PerSecond))
	return nil
}

// waiters wakes the worker waiting for an event, by event ID.
type waiters struct{ m sync.Map }

func (w *waiters) add(id string) chan struct{} {
	ch := make(chan struct{}, 1)
	w.m.Store(id, ch)
	return ch
}

func (w *waiters) wake(id string) {
	if ch, ok := w.m.LoadAndDelete(id); ok {
		ch.(chan struct{}) <- struct{}{}
	}
}

func (w *waiters) wait(ctx context.Context, id string, ch chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		w.m.Delete(id)
		return fmt.Errorf("event %s not handled: %w", id, ctx.Err())
	}
}

// rawBench is a plain stream with a durable pull consumer.
type rawBench struct {
	js      jetstream.JetStream
	waiters waiters
	seq     atomic.Int64
	cc      jetstream.ConsumeContext
}

func startRaw(ctx context.Context, node *coord.Node, workers int) (*rawBench, error) {
	b := &rawBench{js: node.JetStream()}
	s, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "MSGBENCH", Subjects: []string{"msgbench.>"}, Storage: jetstream.FileStorage, MaxAge: time.Hour,
	})
	if err != nil {
		return nil, err
	}
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1024, AckWait: 30 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	b.cc, err = cons.Consume(func(m jetstream.Msg) {
		if m.Ack() == nil {
			b.waiters.wake(m.Headers().Get("Id"))
		}
	}, jetstream.PullMaxMessages(max(workers, 16)))
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (b *rawBench) event(ctx context.Context, w int) error {
	id := strconv.FormatInt(b.seq.Add(1), 10)
	m := nats.NewMsg("msgbench.events")
	m.Header.Set("Id", id)
	m.Data = []byte("event from worker " + strconv.Itoa(w))
	ch := b.waiters.add(id)
	if _, err := b.js.PublishMsg(ctx, m); err != nil {
		b.waiters.m.Delete(id)
		return err
	}
	return b.waiters.wait(ctx, id, ch)
}

func (b *rawBench) close() { b.cc.Stop() }

// outboxBench is a producer and a consumer, each with its own Badger
// store, on one node.
type outboxBench struct {
	producer, consumer *localstore.Store
	ob                 *msg.Outbox[*localstore.Tx]
	relay              *msg.Relay
	subs               []*msg.Subscription
	waiters            waiters
}

const topic = "bench.events"

func startOutbox(ctx context.Context, node *coord.Node, producerDir, consumerDir string, workers int) (*outboxBench, error) {
	quiet := localstore.WithLogger(slog.New(slog.DiscardHandler))
	p, err := localstore.Open(producerDir, quiet)
	if err != nil {
		return nil, err
	}
	c, err := localstore.Open(consumerDir, quiet)
	if err != nil {
		_ = p.Close()
		return nil, err
	}
	b := &outboxBench{producer: p, consumer: c}
	b.ob = msg.NewOutbox(msg.Badger(p))
	b.relay = msg.StartRelay(node, b.ob)
	handled := msg.WithMetrics(func(e msg.Event) {
		if e.Kind == msg.EventHandle && e.Err == nil && !e.Duplicate {
			b.waiters.wake(e.ID)
		}
	})
	sub, err := msg.Subscribe(ctx, node, msg.Badger(c), "bench", topic,
		func(_ context.Context, tx *localstore.Tx, d *msg.Delivery) error {
			return tx.Set([]byte("effect/"+d.ID), d.Payload)
		}, handled, msg.WithConcurrency(max(workers, 16)))
	if err != nil {
		b.close()
		return nil, err
	}
	b.subs = append(b.subs, sub)
	return b, nil
}

func (b *outboxBench) event(ctx context.Context, w int, keyed bool) error {
	m := msg.Message{Topic: topic, Payload: []byte("event from worker " + strconv.Itoa(w))}
	if keyed {
		m.Key = "worker-" + strconv.Itoa(w)
	}
	var id string
	var ch chan struct{}
	err := b.producer.Update(func(tx *localstore.Tx) error {
		var err error
		if id, err = b.ob.Add(ctx, tx, m); err != nil {
			return err
		}
		if err := tx.Set([]byte("order/"+id), m.Payload); err != nil { // the business write
			return err
		}
		ch = b.waiters.add(id)
		return nil
	})
	if err != nil {
		return err
	}
	b.ob.Notify()
	return b.waiters.wait(ctx, id, ch)
}

func (b *outboxBench) close() {
	for _, s := range b.subs {
		_ = s.Close()
	}
	if b.relay != nil {
		_ = b.relay.Close()
	}
	_ = b.producer.Close()
	_ = b.consumer.Close()
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "msgbench:", err)
	os.Exit(1)
}
