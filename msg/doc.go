// Package msg is Concord's durable messaging: a transactional outbox that
// a relay publishes to JetStream, and named consumers that apply each
// message once in effect, with an inbox, retries with backoff, dead
// letters and per-key order. It is the runtime under the typed helpers
// that protoc-gen-concord generates for events (a topic, a protobuf
// payload, an optional ordering key); it works without them and without
// an App.
//
// # Wiring
//
// Pick the Store that holds the business data: Badger(db) for the
// instance's localstore.Store, or SQL(db, dialect, txOptions) for the
// user's database/sql database (tcc.SQLite() or tcc.PostgreSQL(), the
// dialects of the TCC barrier; create the tables with CreateTables or
// DDL). A producer calls Outbox.Add(ctx, tx, Message) inside the
// transaction that holds its business write, commits, and may call
// Outbox.Notify; StartRelay runs the relay of that outbox on a coord.Node.
// A consumer calls Subscribe(ctx, node, store, name, topic, handler); the
// handler receives the local transaction in which to write its effects.
//
// # Wire format
//
// A message goes to the CONCORD_MESSAGES stream (7 days, two-minute
// duplicate window) on subject concord.msg.<topic>.<partition>: the
// partition is fnv1a32(key) mod Partitions (16) for a message with an
// ordering key, "u" without one. Headers: Nats-Msg-Id (the publish's
// dedupe ID: the message ID when relayed), Concord-Id (the message ID, 32
// lowercase hex digits of randomness), Concord-Key (the key in unpadded
// base64url), Concord-Time (when the outbox row was written), and, with
// WithTracing, the producer span's trace context (traceparent and
// tracestate, W3C Trace Context by default), kept in the outbox row (Badger
// only) and read by the consumer without trust. Topics are
// dot-separated tokens of [a-z0-9_-] (CheckTopic) and consumer names
// [a-z0-9-] (CheckConsumerName); keys are any UTF-8 without NUL bytes, up
// to MaxKeyLen, and reach headers only encoded. Nothing else reaches a
// subject, a consumer name or a header. Incoming messages are decoded without trust: a message on
// a topic's subject whose envelope is invalid is dead-lettered with the
// reason "malformed message", never handed to a handler.
//
// # Guarantees
//
// Outbox. Add writes a row (ID, topic, key, payload, write time) in the
// caller's transaction: the row commits if and only if the transaction
// does. Nothing is published for a transaction that rolled back. A row
// that committed stays in the store until JetStream acknowledged its
// publish, so it is published at least once whatever crashes in between:
// a relay started later on the same store (after a restart) publishes
// what is left. The relay publishes rows in commit order within each
// partition of a topic, one at a time, each after the previous one's
// acknowledgement, and deletes rows only after their acknowledgement. A
// row published again (a crash after the acknowledgement and before the
// delete, or two relays on one SQL database) carries the same
// Nats-Msg-Id, so the stream drops it within the two-minute duplicate
// window; past it, the consumers' inboxes drop it. Commit order means:
// on SQLite the order of commits; on PostgreSQL the order of the
// auto-increment column, which is the commit order of transactions that
// do not overlap in time (of two overlapping ones either may go first);
// on Badger the order of a stamp that grows strictly within the process,
// likewise exact for transactions that do not overlap. Messages without
// a key have no order among themselves: the relay publishes them
// concurrently (up to 16 publishes at once in all). The relay wakes when Add or
// Notify is called, re-checks for about 250 ms (a wake from Add comes
// before the commit), and sweeps every WithSweepInterval (5 s) for rows
// it was not told about.
//
// Delivery. A consumer name belongs to one service: every process that
// subscribes under it must run the same handler on the same kind of
// store. Each (consumer name, topic) is served by 17 durable
// JetStream consumers, one per partition, shared by every process that
// subscribes under the name: each message goes to one of them at a time,
// and every distinct name receives every message. Delivery is at least
// once. The handler runs inside a local transaction that first inserts
// the inbox row (consumer name, message ID) if it is absent; if the row
// exists the handler does not run and the message is acknowledged. The
// handler's writes and the inbox row commit together, and the message is
// acknowledged only after that commit. Hence, per store: a message's
// effects are committed at most once per consumer name, and at least once
// unless it is dead-lettered. A crash (or a lost ack) after the commit
// leads to a redelivery that the inbox answers without running the
// handler. With SQL, processes that share the database share the inbox,
// so this holds across them. With Badger each instance has its own
// store and inbox: a message redelivered to another instance (its first
// handler crashed after committing, or its ack was lost) is applied in
// that instance's store too. Inbox rows are kept WithInboxRetention (7
// days, the stream's age limit): Badger expires them by TTL, SQL
// subscriptions delete them hourly; a duplicate that arrives later is
// handled again.
//
// Order. An ordered partition's JetStream consumer allows one
// unacknowledged message at a time (MaxAckPending 1) across all processes,
// so the messages of one key are handled one after another, in stream
// order, which is the relay's commit order: a failed message is retried
// (after its backoff) before any later message of its partition, and a
// later message is handled only after the earlier one was acknowledged or
// dead-lettered. If JetStream redelivers a message whose handler is still
// running elsewhere (its process stopped answering for the ack wait), the
// two runs race and at most one commits (the inbox row); later messages
// wait for the acknowledgement. Keys that share a partition are
// serialized too, so at most 16 keyed messages of one topic are handled
// at once per consumer name, across all processes. Messages without a
// key are handled concurrently, up to 1024 in flight per consumer name
// and WithConcurrency (16) per process; WithConcurrency bounds every
// handler of a Subscription in the process.
//
// # Failures
//
// A handler error, a panic in the handler (recovered) or a store error
// rolls back the transaction and is retried: the message is delivered
// again after WithBackoff's delay (1 s, doubling, at most 1 min), which
// blocks its partition meanwhile. When the delivery that failed was the
// WithMaxDeliver-th (5), or the error wraps ErrPermanent, the message is
// published to the CONCORD_DEAD_LETTERS stream (subject
// concord.dlq.<consumer>.<topic>; headers Concord-Error, the error cut to
// 1024 bytes; Concord-Consumer; Concord-Deliveries; Concord-Topic and the
// message's own headers), and only after JetStream acknowledged the dead
// letter is the source message terminated, so a crash in between at worst
// stores the dead letter again (dropped by the duplicate window) and
// retries. A message delivered more than WithMaxDeliver times without an
// answer (handlers that crash their process) is dead-lettered without
// running its handler. Every delivery counts, including one answered with
// an immediate redelivery because its Subscription was closing. A running
// handler tells JetStream every third of
// WithAckWait (30 s) that it is still working; a process that dies leaves
// its messages to be redelivered after the ack wait. DeadLetters lists the
// dead letters, Replay publishes one again to its topic with its ID
// (consumers that applied it skip it by their inbox) and Discard deletes
// one. A replayed message goes to the end of its partition, after the
// later messages of its key: dead-lettering a message gives up its order.
// Dead letters are kept 30 days.
//
// Relay failures are retried with backoff and logged (WithLogger); a row
// whose publish fails holds back only the later rows of its partition,
// until it is published.
// Close on a Relay or a Subscription stops it and waits for its
// goroutines; a Subscription's Close cancels the context of the running
// handlers and waits for them to return, and messages it received but did
// not answer are redelivered.
//
// # Operability
//
// concord status (and the status endpoint of an App or a concord node,
// as JSON under "messages") shows, from package msgstatus:
//
//   - each consumer name's subscription to a topic, summed over its
//     JetStream consumers: messages pending delivery, in flight
//     (delivered, not yet answered) and redelivered (in flight and
//     delivered more than once). Cluster-wide: every instance answers the
//     same.
//   - the number of dead letters. Cluster-wide.
//   - each outbox whose Relay runs in the answering process, on the node
//     the status is read from: its store kind, the rows waiting and the
//     oldest row's age. Per instance: an outbox lives in one instance's
//     store, so ask each instance (its admin endpoint) for its own; a
//     concord node shows none.
//
// An App's admin listener serves DeadLetters, Replay and Discard behind
// its admin credential (concord.DeadLettersPath), for its web console and
// for concord dead-letters list|replay|discard, which otherwise (-nats)
// runs them over a NATS connection (a node's listener, as an app in
// client mode connects). WithMetrics reports every publish (Outbox.Add), relay,
// handle (success, failure, duplicate) and dead letter as an Event, for
// Prometheus or OpenTelemetry counters.
//
// # Limits
//
// Topics up to MaxTopicLen (128) bytes, keys up to MaxKeyLen (256),
// payloads up to MaxPayload (512 KiB). Partitions is fixed: changing it
// would move keys between partitions. Throughput of one partition is
// bounded by one handler's latency plus a round trip, since its messages
// are handled one at a time.
package msg
