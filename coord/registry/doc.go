// Package registry is Concord's service registry on the coordination node:
// servers register their instances under TTL leases, and a Resolver turns
// them into a watch-driven view that implements rpc.Resolver.
//
// # Registering
//
// Register stores a Registration as JSON in coord.BucketRegistry under the
// key "<service>.<id>", each part escaped into one key token (letters,
// digits, '-' and '_' are kept, every other byte becomes "=XX"), so service
// names may contain '.', and one service's key prefix never matches
// another's. The key carries a TTL (DefaultTTL, WithTTL; whole seconds, at
// least 1s). The Registrar refreshes it every TTL/3 with a conditional
// publish on the key's subject that expects the sequence of its own last
// message and sets the TTL again (kv.Update would drop it). When the
// refresh is refused because the key changed, the lease was lost: the key
// expired (a partition or a node restart outlasted the TTL) or someone
// deleted or purged it. The registrar then reads the key and, if no other
// live registration is there, creates it again (Reregistrations counts
// this); an earlier write of its own whose outcome was unclear is
// recognized by the lease ID in its header and adopted, not counted. A
// refresh that fails without an answer (a timeout, a reconnect) is retried
// after TTL/12, so one lost heartbeat does not lose the lease.
//
// Deregister stops the heartbeats and replaces the key, only if it still
// holds this registrar's message, with a purge marker that itself expires
// after a second; graceful shutdown calls it before draining. Close stops
// the heartbeats and leaves the lease to lapse. When the node's connection
// closes for good the heartbeats stop by themselves (Done, Err).
//
// # Resolving
//
// A Resolver keeps one view per service, started by the first Resolve of
// that service and kept until Close. The view is fed by an ordered
// consumer on the service's keys (last message per key, then every new
// one) and replaced by a fresh one, a full re-read, every relist interval
// (DefaultRelistInterval, ResolverRelistInterval), which repairs events a
// watcher skipped and restarts a watcher that died. Only Ready instances
// are returned, sorted by ID. Resolve is a lock-free map read returning the
// same immutable slice until the view's content changes; heartbeats do not
// change it. With no ready instance Resolve waits, woken by the watch,
// until one appears or its context ends (ErrNoInstances wrapping
// ctx.Err()); ResolverFailFast fails as soon as the view is loaded.
// Services and Instances read the bucket afresh for `concord status`.
//
// # Guarantees
//
// Writes to a key are conditional on its last sequence, so they are
// linearizable per key: a registrar never overwrites a live registration it
// does not own. Views are not linearizable; they trail the bucket:
//
//   - A registration, readiness change or deregistration reaches a
//     connected view after the watch delay (milliseconds on one node).
//   - An instance that stops heartbeating (crash, partition from the node)
//     is in its key until at most TTL after its last successful heartbeat;
//     the node then writes an expiry marker (it checks about every second)
//     that watchers deliver. Views drop it within TTL + 1s + watch delay;
//     the tests assert TTL + 1s from the moment heartbeats stop.
//   - If a watcher misses an event, the next re-read repairs the view: the
//     worst case adds one relist interval.
//   - A lost lease is restored by the next heartbeat: within TTL/3 plus a
//     round trip once the node is reachable again (after a restart of the
//     node, add the client's reconnect delay, 2s by default).
//
// On a partition, an instance cut off from the node cannot refresh, so it
// leaves every view after its TTL even if it still serves clients near it;
// it registers again once it reaches the node. A resolver cut off from the
// node keeps returning its last view, possibly stale, rather than nothing:
// clients then rely on their breakers and retries; the view is re-read
// within one relist interval after the connection returns. In an R3
// cluster, registry writes need a quorum of the bucket's Raft group; a
// leader election stalls heartbeats for seconds, so a TTL shorter than that
// stall can make instances drop out of views until their next heartbeat.
//
// # Instance IDs
//
// An ID left empty is 128 random bits, unique in practice. A fixed ID (a
// pod name, say) is held by at most one live registrar at a time: every
// message carries its registrar's random lease ID, and Register refuses to
// overwrite another registrar's live registration. It waits up to that
// registration's TTL plus 2s for it to lapse (a crashed predecessor with
// the same ID) and fails with ErrDuplicateID as soon as the holder
// refreshes it (a live duplicate). A registrar that finds its ID taken by
// another after its own lease lapsed does not take it back while the other
// is live; it logs and keeps trying.
//
// # Lifecycle
//
// Registrar and Resolver are safe for concurrent use. Their Close methods
// are idempotent and return once their goroutines have ended; when the
// node is unreachable, a Resolver's Close takes up to 2s (deleting its
// consumers gives up then).
package registry
