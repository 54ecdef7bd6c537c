package msgstatus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/msg/internal/layout"
	"github.com/concordrpc/concord/msg/internal/outboxes"
)

// Status is the messaging part of a status read.
type Status struct {
	// Consumers lists each consumer name's subscription to a topic, sorted
	// by name then topic; empty when ConsumersUnknown is set.
	Consumers []Consumer `json:"consumers"`
	// ConsumersUnknown is "" when Consumers was read, and otherwise says
	// why not.
	ConsumersUnknown string `json:"consumers_unknown,omitempty"`
	// DeadLetters is how many messages CONCORD_DEAD_LETTERS holds (see
	// msg.DeadLetters); 0 when DeadLettersUnknown is set.
	DeadLetters uint64 `json:"dead_letters"`
	// DeadLettersUnknown is "" when DeadLetters was read, and otherwise
	// says why not.
	DeadLettersUnknown string `json:"dead_letters_unknown,omitempty"`
	// Outboxes lists the outboxes whose relays run in the process that
	// answered, on the node it answered from, in the order they started.
	Outboxes []Outbox `json:"outboxes"`
}

// Consumer sums the JetStream consumers (one per partition) that serve a
// consumer name's subscription to a topic.
type Consumer struct {
	// Name is the consumer name; Topic the topic.
	Name  string `json:"name"`
	Topic string `json:"topic"`
	// Partitions is how many of its JetStream consumers exist (17 once
	// subscribed: 16 ordered partitions and the unordered one).
	Partitions int `json:"partitions"`
	// Pending is how many messages of the topic wait to be delivered to
	// it.
	Pending uint64 `json:"pending"`
	// InFlight is how many messages were delivered and not yet answered
	// (being handled, or waiting for a redelivery after a failure).
	InFlight int `json:"in_flight"`
	// Redelivered is how many messages in flight were delivered more than
	// once.
	Redelivered int `json:"redelivered"`
}

// Outbox is one outbox's depth, read by the process that relays it.
type Outbox struct {
	// Instance is the name of the node the relay runs on.
	Instance string `json:"instance"`
	// Store is "badger", "sqlite" or "postgres".
	Store string `json:"store"`
	// Rows is how many committed rows wait to be published.
	Rows int `json:"rows"`
	// Oldest is when the oldest waiting row was written (the producer's
	// clock); absent when none wait.
	Oldest time.Time `json:"oldest,omitzero"`
	// OldestAgeMillis is how old the oldest waiting row was when read, in
	// milliseconds; 0 when none wait.
	OldestAgeMillis int64 `json:"oldest_age_ms"`
	// Unknown is "" when the fields above were read, and otherwise says
	// why not.
	Unknown string `json:"unknown,omitempty"`
}

// Read reads node's messaging status, each part (the consumers, the dead
// letters, each outbox) concurrently and bounded by timeout. A part that
// does not answer is reported as unknown with the reason, never as an
// error. It costs one stream info, one consumer listing (a request per
// 256 consumers) and one outbox count per local outbox (msg.Outbox.Stats).
func Read(ctx context.Context, node *coord.Node, timeout time.Duration) *Status {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st := &Status{Consumers: []Consumer{}, Outboxes: []Outbox{}}
	entries := outboxes.List(node)
	st.Outboxes = make([]Outbox, len(entries))
	var wg sync.WaitGroup
	wg.Go(func() {
		cons, err := readConsumers(ctx, node.JetStream())
		if err != nil {
			st.ConsumersUnknown = reason(err, timeout)
			return
		}
		st.Consumers = cons
	})
	wg.Go(func() {
		s, err := node.JetStream().Stream(ctx, coord.StreamDeadLetters)
		if err != nil {
			st.DeadLettersUnknown = reason(err, timeout)
			return
		}
		st.DeadLetters = s.CachedInfo().State.Msgs
	})
	for i, e := range entries {
		wg.Go(func() {
			o := &st.Outboxes[i]
			o.Instance, o.Store = node.Name(), e.Store
			rows, oldest, err := e.Stats(ctx)
			if err != nil {
				o.Unknown = reason(err, timeout)
				return
			}
			o.Rows, o.Oldest = rows, oldest
			if rows > 0 {
				o.OldestAgeMillis = max(time.Since(oldest), 0).Milliseconds()
			}
		})
	}
	wg.Wait()
	return st
}

// readConsumers lists CONCORD_MESSAGES's consumers and sums them per
// consumer name and topic. JetStream consumers that msg did not make are
// left out.
func readConsumers(ctx context.Context, js jetstream.JetStream) ([]Consumer, error) {
	s, err := js.Stream(ctx, coord.StreamMessages)
	if err != nil {
		return nil, err
	}
	type key struct{ name, topic string }
	sums := map[key]*Consumer{}
	lister := s.ListConsumers(ctx)
	for info := range lister.Info() {
		name, topic, _, ok := layout.ParseDurable(info.Name)
		if !ok {
			continue
		}
		c := sums[key{name, topic}]
		if c == nil {
			c = &Consumer{Name: name, Topic: topic}
			sums[key{name, topic}] = c
		}
		c.Partitions++
		c.Pending += info.NumPending
		c.InFlight += info.NumAckPending
		c.Redelivered += info.NumRedelivered
	}
	if err := lister.Err(); err != nil {
		return nil, err
	}
	out := make([]Consumer, 0, len(sums))
	for _, c := range sums {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Consumer) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Topic, b.Topic)) })
	return out, nil
}

func reason(err error, timeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		return fmt.Sprintf("no answer within %v", timeout)
	}
	return err.Error()
}
