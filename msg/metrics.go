package msg

import "time"

// EventKind says what an Event reports.
type EventKind string

// The kinds of Event.
const (
	// EventPublish: Outbox.Add wrote a row in the caller's transaction.
	// It is reported before the transaction ends, so a transaction that
	// rolls back (or a Badger Update that retries) reports rows that were
	// never committed.
	EventPublish EventKind = "publish"
	// EventRelay: a Relay published a row to JetStream; Err is set when the
	// publish failed (the row stays and is published again). Latency is the
	// publish's round trip.
	EventRelay EventKind = "relay"
	// EventHandle: a Subscription answered a delivery. Err nil: the
	// handler's transaction committed (or, with Duplicate, the inbox
	// already had the message and the handler did not run) and the message
	// is acknowledged. Err set: the handler or the store failed and the
	// message is delivered again later, or dead-lettered (an EventDeadLetter
	// follows). Latency is the local transaction's time, handler included.
	EventHandle EventKind = "handle"
	// EventDeadLetter: a Subscription stored a message in
	// CONCORD_DEAD_LETTERS; Err is the reason.
	EventDeadLetter EventKind = "dead_letter"
)

// Event is one thing an Outbox, a Relay or a Subscription did, for
// metrics (WithMetrics). Count them by Kind, Topic and Consumer.
type Event struct {
	// Kind is what happened.
	Kind EventKind
	// Topic is the message's topic.
	Topic string
	// ID is the message's ID, to correlate events with traces or logs;
	// never use it as a metric label (one series per message).
	ID string
	// Consumer is the consumer name (EventHandle and EventDeadLetter).
	Consumer string
	// Deliveries is the delivery count (EventHandle and EventDeadLetter).
	Deliveries int
	// Duplicate reports an EventHandle answered by the inbox.
	Duplicate bool
	// Latency is how long the operation took (EventRelay and
	// EventHandle).
	Latency time.Duration
	// Err is the failure, nil on success.
	Err error
}

// WithMetrics calls hook for every Event of an Outbox (NewOutbox), a
// Relay or a Subscription, on the goroutine that did the work: it must be
// fast and safe for concurrent use. Export to Prometheus or OpenTelemetry
// from it. Default: none.
func WithMetrics(hook func(Event)) Option {
	return optionFunc(func(c *config) { c.metrics = hook })
}

// report calls the metrics hook, if any.
func (c *config) report(e Event) {
	if c.metrics != nil {
		c.metrics(e)
	}
}
