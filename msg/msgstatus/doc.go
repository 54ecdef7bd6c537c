// Package msgstatus reads the durable-messaging part of a status read
// (concord status): the consumers of the CONCORD_MESSAGES stream with
// their pending and redelivered counts, the number of dead letters, and
// the depth of the outboxes whose relays run in this process on the node.
// It is apart from package msg so that a status reader (the registry's
// status handler, the concord tool) does not link msg's stores.
//
// What is shown where: consumers and dead letters are cluster-wide (any
// node or App answers the same); outboxes are per instance, since each
// lives in an instance's local store (or the database it uses), and are
// reported only by the process whose msg.Relay runs on the node that the
// status is read from. Read the status of each instance (its admin
// endpoint) to see every outbox.
package msgstatus
