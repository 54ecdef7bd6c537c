// Package lock provides leases (Session), distributed locks with fencing
// tokens (Mutex), leader election (Election) and fencing enforcement where
// data is written (Guard), on Concord's coordination node: the
// BucketLocks and BucketElections key-value buckets of JetStream, which
// are Raft-replicated streams in a cluster (R3) and a single stream on one
// node (R1).
//
//	mu := lock.NewMutex(lock.FromNode(node), "orders/42", lock.WithTTL(10*time.Second))
//	token, err := mu.Lock(ctx)
//	...
//	err = guard.Update(ctx, "orders/42", token, func(tx *localstore.Tx) error { ... })
//	err = mu.Unlock(ctx)
//
// # Algorithm
//
// A lock is one key: "mutex." and its name in BucketLocks, for an election
// "election." and its name in BucketElections. (Elections were keyed by
// the bare name before; a process from before that change and one from
// after it do not see each other's leaders, so upgrade all candidates of
// an election together.) Acquiring it is one conditional publish on the
// key's subject (Nats-Expected-Last-Subject-Sequence): it succeeds only if
// the key's last message is the sequence the acquirer saw free (none, a
// release marker or an expiry marker). The message carries a per-message
// TTL (Nats-TTL), the lease, and a random attempt ID. The keepalive
// re-publishes it every TTL/3 with the same condition on the holder's own
// last sequence; release publishes a purge marker with the same condition.
// Every write is conditional, so a write of a holder that lost its key is
// refused and never affects the next holder.
//
// # Guarantees
//
// Mutual exclusion (linearizable). Grants are the conditional writes above,
// decided in the stream's total order (Raft log in a cluster), so at most
// one grant of a key is live in that order at any time: a grant is
// accepted only right after a release or expiry marker, or on an empty
// key. A holder considers itself the holder from the acknowledgement of
// its grant until its deadline (Session.Deadline): the send time of its
// last acknowledged write plus the TTL less 1%. The server expires a
// message a TTL after storing it, which is after it was sent, so a holder's
// deadline passes before the server frees the key and before any later
// grant. This assumes clocks that advance at nearly the same rate; after a
// stream-leader change in a cluster the new leader expires messages by
// their stored time and its own clock, so clock offsets between nodes also
// shorten or lengthen leases. A keepalive acknowledged after the deadline
// does not extend it (the server's expiry marker, an unconditional rollup,
// may remove it), and a lease whose deadline passed is lost.
//
// Fencing tokens. A grant's token is the stream sequence of its message.
// The stream gives each stored message a sequence greater than every
// earlier one, and never reuses one: not after messages expire or are
// purged (the stream keeps its last sequence even when empty), not across
// restarts, and not across Raft leader changes (a sequence is assigned by
// the log). A grant is stored after the previous holder's grant on that
// key, so tokens strictly increase per key across holders, node crashes and
// restarts. Tokens are not dense. They reset only if the bucket is deleted
// and created again, and could repeat if acknowledged writes are lost: with
// coord.WithSyncInterval on a single node that loses power. Refreshes carry
// the grant's token in a header, so readers (Election.Leader) see it too.
//
// Unclear outcomes. A request that times out may still commit. Every write
// of an acquisition carries the same attempt ID; after an unclear answer
// the acquirer reads the key back from the stream leader, and a message
// with its attempt ID proves the grant is its own (the grant's lease is
// then counted from the first send). If the acquisition ends undecided
// (ctx ended), it releases the key if the write committed, and otherwise
// writes a release marker conditional on the key's current free state, so
// that no write of the attempt (each expected an older sequence) can commit
// later. A write delayed in the network for longer than the marker lives
// (one second) on a key that is then empty could still commit; it holds the
// key for at most a TTL. Keepalives and releases resolve unclear outcomes
// the same way. A release reads the key back with a request of its own,
// bounded by the op timeout (the caller's context may be what ended the
// write), and if the key is no longer the grant's, reports success, since
// its write may be what freed it. An acquisition skips its first read only
// when it expects the key empty (a holder's first attempt), at a release
// marker known from the marker's acknowledgement in this process (the
// holder's own, or one handed to the first in line; see Order), or at a
// marker the key's watch delivered; a sequence of a live message is never
// used so, since it may be another holder's live grant, which a write
// expecting it would replace.
//
// Waiting. A Lock or Campaign that cannot take the key at once (see Order)
// waits in line: it publishes a ticket and waits on a watch (an ordered
// consumer) of the key and its tickets, with a fallback timer, since
// watchers can skip messages or resume late after a node dies. A wait ends
// on a watch event, on a release of the key in this process, when the
// ticket is due for a refresh, or on the fallback timer: at the holder's
// lease expiry, or, behind another ticket, at that ticket's expiry, never
// longer than a TTL after the waiter's last read of either (refreshes of
// its own ticket do not put it off), after which the waiter reads the key
// (or that ticket) instead of trusting the watch. Re-checks without an
// event come at most every 20 ms. There is no polling loop. While no
// watch can be created, or its ticket cannot be published, a waiter
// contends without order, re-trying with a backoff (5 ms to 640 ms). Waiters on one key of one bucket over one connection
// share one watch, whatever Session they wait under: the first creates it,
// the last to leave stops it; the watch has one consumer, filtered on the
// key and its tickets. Stopping deletes the watch's consumer on the server
// once the ordered consumer has stopped (at once; after its retry
// backoff, at most 10 s, if it was re-creating itself), with a request
// bounded by 2 s; a consumer that request could not delete (the node
// unreachable) is removed by the server after 30 s without pulls. So a
// process has, per connection, at most one live consumer on the locks
// stream for each key that some Lock is waiting on, and on the elections
// stream for each election that some Campaign or Observe is waiting on;
// besides those, only consumers being deleted (a watch stopped within the
// last 12 s, or an ordered consumer that is re-creating itself and deletes
// its previous consumer in the background), and those whose deletion
// failed, until 30 s after their last pull.
// Lock and Campaign return as soon as they have the grant: leaving the
// watch and removing the ticket are done in the background, since
// stopping an ordered consumer that is retrying to re-create itself
// (after a node failure, or at the stream's consumer limit) takes up to
// its retry backoff (10 s). The session waits for that work, at most 2 s
// for a watch, when it closes: on Session.Close, and for a lease of a
// Mutex's or Election's own, on Unlock, Resign or a failed acquisition.
//
// Order. Lock and Campaign calls on one key are granted in the order they
// began waiting, across processes: by ticket. A ticket is a message in the
// key's bucket on the key _cq.<key>.<contender>, one key per Mutex or
// Election (which acquires once at a time), so the tickets of a key are
// exactly the keys matching _cq.<key>.*. (A Mutex's key is "mutex." and
// its name, an Election's "election." and its name: no name collides with
// a ticket.) Its place in line is the stream sequence of its first
// publish. It carries the waiter's TTL (Nats-TTL) and is re-published
// every TTL/3 while its waiter waits, with its place in a header; a ticket
// not refreshed in time expires, and its waiter, if alive, publishes a new
// one at the back of the line. A waiter writes its grant, the conditional
// write above, only when its watch has delivered its ticket (and, in
// stream order, every earlier one), no earlier ticket counts, and the key
// is free; the grant, its refreshes and its release marker name the
// ticket's place (Concord-Served), and tickets up to it no longer count.
// The new holder then removes its ticket in the background, with a purge
// marker that lives a second (a grant names the ticket, so this removal is
// off the handoff's path; it is one more write per waited grant, while
// leaving tickets to expire would keep up to a TTL of served tickets in
// the stream, for every watch to replay). A waiter that gives up (ctx or
// session ended) removes its ticket too, including one whose first publish
// it never saw answered (it reads the ticket key and removes the ticket if
// it is its own). A waiter that dies without removing it (its process or
// connection gone) delays the waiters behind it at most until the ticket
// expires: at most its TTL after its last refresh.
//
// A Lock or Campaign that finds the key free with no ticket waiting takes
// it at once, as TryLock does: one read of the first ticket key from the
// stream leader (condkv.Next; markers of removed tickets, which last a
// second, are skipped, at most four reads in all) and the conditional
// write; no read when a waiter in the process already watches the key,
// whose watch then tells. Lock and Campaign that find a ticket waiting,
// or the key held, wait in line; so does a holder that unlocks and locks
// again, behind the waiters, and a call that arrives while another in its
// process waits in line. A release in the process hands the sequence of
// its acknowledged release marker to the process's watch of the key, so
// that the first in line, if it waits in this process, writes its grant
// expecting the key free at it, without a read and without waiting for
// the watch. TryLock does not wait in line and publishes no ticket, and
// does not take a free key while a ticket waits (it returns ErrLocked).
//
// Order is a matter of fairness, not safety: grants remain the
// conditional writes above, and the watch only decides when a waiter
// writes. A view that lags (a watch that resumed late, skipped messages,
// or a read answered before a ticket arrived) can grant out of arrival
// order, never two holders at once. A waiter whose ticket such a grant
// counted as served (its place is at or before the grant's) publishes a
// new ticket as soon as its watch delivers that grant, at the back of
// the line as it is then, since no view counts its old ticket any more.
// Arrival is when a waiter's ticket is stored (or, in one process, when
// it joins the line); calls that arrive within a round trip of each other
// may be granted in either order.
//
// Handing out. Lock, TryLock and Campaign return a token only for a live
// grant: not ended, and its deadline still ahead when they return. A grant
// that ended or passed its deadline in between (the process paused, the
// keepalive failed) is given back with a conditional write, and they
// return ErrLeaseLost.
//
// # Failures
//
// Crash. A holder that crashes keeps its key until the key's TTL runs out
// after its last keepalive; waiters are then woken by the expiry marker.
//
// Process pause. A holder paused past its deadline has lost the lock, and
// another holder may have it, but the paused code does not know yet: Done
// is closed only once the session's keepalive runs again and notices, so
// right after the pause Done is still open while Deadline is past. Check
// Mutex.Valid (Election.Valid) before each write or step under the lock:
// it compares Deadline with the clock and fails at once. A pause between
// that check and the write still goes unnoticed, so writes that must not
// follow another holder's are fenced: pass the token to the resource and
// check it with a Guard (or the rpc fencing interceptor). A Guard refuses
// a paused holder's write in two cases only: a newer token for the
// resource has reached that guard (ErrStaleToken), or the paused holder's
// token is higher than any the guard has seen and the guard, verifying it
// on the coordination node, finds it is no longer the current grant
// (ErrUnverifiedToken). A paused holder whose token the guard already
// admitted is admitted again until a newer token reaches the guard: the
// guard orders writes by token, it does not detect lost leases.
//
// Partition. A holder cut off from a majority of the cluster cannot refresh
// and loses its lease at its deadline; the key expires on the majority side
// and another holder can take it there. A minority side grants nothing.
// Requests that stall during a Raft leader election (seconds after a node
// crash) are retried until the caller's context or the lease's deadline
// ends.
//
// Connection loss. A closed connection to the node ends every session on
// it (ErrLeaseLost); a reconnecting connection keeps sessions until their
// deadlines.
//
// # Status and metrics
//
// ReadStatus lists the held locks and the elections' leaders (holder or
// leader value, token, time left, how many wait in line), at most
// MaxStatusEntries of each, with two batched direct reads per bucket (the
// keys, then the tickets) and no consumer: the status endpoint and
// `concord status locks` show it. Tickets are counted, not listed.
// WithHolder names a Mutex's holder there. WithEvents reports grants, waits and lost leases, by kind only,
// for metrics.
//
// # Tracing
//
// With WithTracerProvider, Lock, TryLock and Campaign record a span over
// the whole acquisition, waits included, with the lock's name and the
// granted token.
//
// # Concurrency
//
// Session, Mutex, Election and Guard are safe for concurrent use. A Mutex
// or Election is one contender: use one per goroutine or process that
// competes.
package lock
