// Package txlog is the durable log of Concord's TCC transactions, on the
// coordination node's CONCORD_TXLOG stream. Package tcc's coordinator
// writes it before it acts; its recovery reads it after a crash.
//
// Each transaction has one subject, concord.txlog.tx.<id>, whose last
// message is the transaction's current Record. Every write after the
// first is conditional on the sequence of the last one (JetStream's
// expected last subject sequence), so that two writers, a coordinator and
// a recovery worker, can never both move a transaction on from the same
// state: one wins and the other gets a conflict (coord.IsConflict) and
// re-reads. In particular a decision, once stored, never changes: the
// only writes after it are progress records of the same decision and the
// end.
//
// A finished transaction's subject is purged (a marker that lives one
// second), so the live subjects are exactly the unfinished transactions;
// a summary of it is kept on concord.txlog.done.<id> for the finished
// retention, for display only.
//
// Writes are acknowledged by the stream's leader after its replicas (R3 in
// a cluster) stored them; with the node's default sync setting each one is
// on disk before its acknowledgement (see coord's durability notes).
// Records are JSON; Decode validates what it reads and never trusts a
// message's shape.
package txlog
