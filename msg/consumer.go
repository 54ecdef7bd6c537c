package msg

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/internal/wait"
)

// Handler handles one delivered message inside tx, the local transaction
// that also records the message in the consumer's inbox: its writes
// through tx commit together with the inbox row if it returns nil, and
// not at all otherwise. It must not commit or roll back tx, and should
// have no effects outside it (they would repeat on redelivery). A Badger
// handler may run more than once for one delivery when Update retries a
// conflicting transaction. Return an error wrapping ErrPermanent to send
// the message to the dead letters at once.
type Handler[Tx any] func(ctx context.Context, tx Tx, d *Delivery) error

// Subscription is a running consumer: it receives the messages of one
// topic under one consumer name, and hands them to its Handler. Close
// stops it. It is safe for concurrent use.
type Subscription struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{}
	once   sync.Once
}

// subscriber is what a Subscription's goroutines share.
type subscriber[Tx any] struct {
	cfg      *config
	js       jetstream.JetStream
	stream   jetstream.Stream
	store    Store[Tx]
	consumer string
	topic    string
	h        Handler[Tx]
	sem      chan struct{}
}

// Subscribe starts handling the messages of topic under the consumer name
// consumer, with h, in transactions of store, and returns once the
// consumer exists on node. Every process that subscribes under one name
// shares its messages (each message goes to one of them at a time);
// every distinct name receives every message. A name that subscribes for
// the first time receives every message the stream still holds (7 days).
// See the package doc for the guarantees.
//
// Options: WithConcurrency, WithMaxDeliver, WithBackoff, WithAckWait,
// WithInboxRetention, WithPublishTimeout, WithLogger, WithClock,
// WithMetrics.
//
// Subscribe returns ErrInvalid for an invalid consumer name or topic or a
// nil handler, and JetStream's error when the consumer cannot be created.
func Subscribe[Tx any](ctx context.Context, node *coord.Node, store Store[Tx], consumer, topic string, h Handler[Tx], opts ...Option) (*Subscription, error) {
	if err := CheckConsumerName(consumer); err != nil {
		return nil, err
	}
	if err := CheckTopic(topic); err != nil {
		return nil, err
	}
	if h == nil || store == nil {
		return nil, fmt.Errorf("%w: nil handler or store", ErrInvalid)
	}
	cfg := newConfig(opts)
	js := node.JetStream()
	stream, err := js.Stream(ctx, coord.StreamMessages)
	if err != nil {
		return nil, fmt.Errorf("msg: subscribe %s to %s: %w", consumer, topic, err)
	}
	s := &subscriber[Tx]{
		cfg: cfg, js: js, stream: stream, store: store, consumer: consumer, topic: topic, h: h,
		sem: make(chan struct{}, cfg.concurrency),
	}
	// Create every consumer first, concurrently (each create waits for
	// an fsync), so that an error is returned here.
	parts := partitions()
	its := make([]jetstream.MessagesContext, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, part := range parts {
		wg.Go(func() { its[i], errs[i] = s.open(ctx, part) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, it := range its {
			if it != nil {
				it.Stop()
			}
		}
		return nil, fmt.Errorf("msg: subscribe %s to %s: %w", consumer, topic, err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	sub := &Subscription{cancel: cancel, done: make(chan struct{})}
	for i, part := range parts {
		sub.wg.Go(func() { s.serve(runCtx, part, its[i]) })
	}
	sub.wg.Go(func() { s.cleanLoop(runCtx) })
	return sub, nil
}

// Done is closed when the subscription has stopped.
func (sub *Subscription) Done() <-chan struct{} { return sub.done }

// Close stops receiving, cancels the context of the handlers that run and
// waits for them to return. Messages received but not answered are
// delivered again (to any process) after the ack wait. It is idempotent
// and returns nil.
func (sub *Subscription) Close() error {
	sub.once.Do(func() {
		sub.cancel()
		sub.wg.Wait()
		close(sub.done)
	})
	return nil
}

// open creates or updates the JetStream consumer of one partition and
// starts pulling from it. An ordered partition has at most one message
// in flight across every process (MaxAckPending 1): that is what keeps
// its keys in order.
func (s *subscriber[Tx]) open(ctx context.Context, part string) (jetstream.MessagesContext, error) {
	cc := jetstream.ConsumerConfig{
		Durable:       durableName(s.consumer, s.topic, part),
		Description:   "Concord consumer " + s.consumer + " of " + s.topic,
		FilterSubject: subjectPrefix + s.topic + "." + part,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.ackWait,
		MaxDeliver:    -1, // the consumer dead-letters; see handleMsg
		MaxAckPending: 1,
	}
	pull := 1
	if part == unordered {
		cc.MaxAckPending = 1024
		pull = s.cfg.concurrency
	}
	cons, err := s.stream.CreateOrUpdateConsumer(ctx, cc)
	if err != nil {
		return nil, err
	}
	return cons.Messages(jetstream.PullMaxMessages(pull))
}

// serve receives one partition's messages until ctx ends, reopening the
// consumer if its iterator stops (the consumer was deleted, the
// connection closed and reopened).
func (s *subscriber[Tx]) serve(ctx context.Context, part string, it jetstream.MessagesContext) {
	var wg sync.WaitGroup
	defer wg.Wait()
	retry := 100 * time.Millisecond
	for ctx.Err() == nil {
		if it == nil {
			var err error
			if it, err = s.open(ctx, part); err != nil {
				s.cfg.logger.Warn("msg: reopening a consumer failed", "consumer", s.consumer, "topic", s.topic, "error", err)
				if !wait.Sleep(ctx, retry) {
					return
				}
				retry = min(2*retry, 5*time.Second)
				continue
			}
		}
		m, err := it.Next(jetstream.NextContext(ctx))
		switch {
		case ctx.Err() != nil:
			it.Stop()
			if m != nil {
				_ = m.Nak()
			}
			return
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			it = nil
			continue
		case err != nil:
			// Missed heartbeats and the like: the iterator goes on.
			s.cfg.logger.Debug("msg: receive", "consumer", s.consumer, "topic", s.topic, "error", err)
			wait.Sleep(ctx, 10*time.Millisecond)
			continue
		}
		retry = 100 * time.Millisecond
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			_ = m.Nak() // at once to another process
			it.Stop()
			return
		}
		if part != unordered {
			s.handleMsg(ctx, m)
			<-s.sem
			continue
		}
		wg.Go(func() {
			defer func() { <-s.sem }()
			s.handleMsg(ctx, m)
		})
	}
	if it != nil {
		it.Stop()
	}
}

// errExceeded aborts the handling of a message delivered more often than
// WithMaxDeliver allows.
var errExceeded = errors.New("msg: delivered more often than allowed without a successful handling")

// handleMsg runs the handler for one message and answers JetStream: ack
// after the local commit (or when the inbox already has the message),
// a delayed nak after a failure, or a dead letter and a term after the
// last allowed delivery.
func (s *subscriber[Tx]) handleMsg(ctx context.Context, m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		_ = m.TermWithReason("not a JetStream message")
		return
	}
	deliveries := int(min(meta.NumDelivered, 1<<31-1))
	e, err := decodeDelivery(m.Subject(), m.Headers())
	if err != nil {
		s.deadLetter(ctx, m, envelope{Topic: s.topic}, deliveries, meta.Sequence.Stream, "malformed message: "+err.Error())
		return
	}
	d := &Delivery{
		ID: e.ID, Topic: e.Topic, Key: e.Key, Payload: m.Data(), Deliveries: deliveries,
		Written: e.Written, Sequence: meta.Sequence.Stream,
	}
	ctx, span := s.cfg.startProcess(ctx, m.Headers(), s.consumer, d)
	stop := s.keepAlive(m)
	start := time.Now()
	dup, err := s.store.handle(ctx, s.consumer, e.ID, s.cfg.now(), s.cfg.retention, func(tx Tx) error {
		if deliveries > s.cfg.maxDeliver {
			return errExceeded
		}
		return call(ctx, s.h, tx, d)
	})
	stop()
	if span != nil {
		span.SetAttributes(attrDuplicate.Bool(dup))
		endSpan(span, err)
	}
	if err == nil || ctx.Err() == nil && !errors.Is(err, errExceeded) {
		s.cfg.report(Event{Kind: EventHandle, Topic: e.Topic, ID: e.ID, Consumer: s.consumer, Deliveries: deliveries,
			Duplicate: dup, Latency: time.Since(start), Err: err})
	}
	log := s.cfg.logger.With("consumer", s.consumer, "topic", e.Topic, "id", e.ID, "deliveries", deliveries)
	switch {
	case err == nil:
		if !dup && s.cfg.afterCommit != nil && s.cfg.afterCommit(d) {
			return // a test's crash between the commit and the ack
		}
		_ = m.Ack() // if lost, the redelivery finds the inbox row
	case ctx.Err() != nil:
		_ = m.Nak() // shutting down: at once to another process
	case errors.Is(err, errExceeded):
		s.deadLetter(ctx, m, e, deliveries, meta.Sequence.Stream, errExceeded.Error())
	case errors.Is(err, ErrPermanent) || deliveries >= s.cfg.maxDeliver:
		log.Warn("msg: handler failed; dead-lettering the message", "error", err)
		s.deadLetter(ctx, m, e, deliveries, meta.Sequence.Stream, err.Error())
	default:
		delay := s.backoff(deliveries)
		log.Info("msg: handler failed; retrying", "error", err, "retry_in", delay)
		_ = m.NakWithDelay(delay)
	}
}

// call runs h, turning a panic into an error: a poison message must not
// crash the process.
func call[Tx any](ctx context.Context, h Handler[Tx], tx Tx, d *Delivery) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("msg: handler panicked: %v", p)
		}
	}()
	return h(ctx, tx, d)
}

// backoff returns the delay before the delivery after the n-th failed one.
func (s *subscriber[Tx]) backoff(n int) time.Duration {
	d := s.cfg.backoff
	for i := 1; i < n && d < s.cfg.maxBackoff; i++ {
		d *= 2
	}
	return min(d, s.cfg.maxBackoff)
}

// keepAlive tells JetStream that m is still being handled every third of
// the ack wait, until the returned function is called.
func (s *subscriber[Tx]) keepAlive(m jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(s.cfg.ackWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// deadLetter stores m in CONCORD_DEAD_LETTERS and then terminates it. If
// the dead letter cannot be stored, m is delivered again after the
// backoff and dead-lettered then.
func (s *subscriber[Tx]) deadLetter(ctx context.Context, m jetstream.Msg, e envelope, deliveries int, seq uint64, reason string) {
	pctx, cancel := context.WithTimeout(ctx, s.cfg.publishTimeout)
	defer cancel()
	dl := deadLetterMsg(e, m.Data(), s.consumer, deliveries, seq, reason)
	if _, err := s.js.PublishMsg(pctx, dl, jetstream.WithExpectStream(coord.StreamDeadLetters)); err != nil {
		s.cfg.logger.Warn("msg: storing a dead letter failed; retrying", "consumer", s.consumer, "seq", seq, "error", err)
		_ = m.NakWithDelay(s.backoff(deliveries))
		return
	}
	s.cfg.report(Event{Kind: EventDeadLetter, Topic: e.Topic, ID: e.ID, Consumer: s.consumer, Deliveries: deliveries, Err: errors.New(reason)})
	_ = m.TermWithReason("dead letter")
}

// cleanLoop deletes expired inbox rows now and then.
func (s *subscriber[Tx]) cleanLoop(ctx context.Context) {
	const limit = 1000
	for wait.Sleep(ctx, s.cfg.cleanEvery) {
		for range 100 { // at most 100k rows per round
			n, err := s.store.cleanInbox(ctx, s.consumer, s.cfg.now().Add(-s.cfg.retention), limit)
			if err != nil {
				s.cfg.logger.Warn("msg: inbox cleanup failed", "consumer", s.consumer, "error", err)
			}
			if err != nil || n < limit {
				break
			}
		}
	}
}
