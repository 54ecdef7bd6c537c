package lock

import (
	"context"
	"time"
)

// Mutex is a distributed lock on one name, in the BucketLocks bucket of the
// coordination node. At most one Mutex holds a name at a time, as decided
// by the conditional writes in the node's Raft-replicated stream; each
// grant carries a fencing token that is greater than every earlier grant's
// on that name. See the package doc for the guarantees.
//
// Waiters are served in arrival order, across processes: a Lock that
// must wait publishes a ticket in the coordination store, and the first
// ticket in line writes the next grant, with one conditional write. A
// waiter that dies delays the others at most until its ticket expires
// (its TTL). TryLock does not queue, and does not take the lock while
// others wait. See the package doc (Order).
//
// A Mutex is one holder: it holds the lock at most once (Lock while held
// returns ErrAlreadyHeld), and its methods are safe for concurrent use. Use
// one Mutex per contender. Without WithSession, each grant has a lease of
// its own, which Unlock revokes.
type Mutex struct {
	h *holder
}

// NewMutex returns a Mutex for name on b's node. It does no I/O. An invalid
// name or TTL makes every method return ErrInvalidName or ErrInvalidTTL.
func NewMutex(b Backend, name string, opts ...Option) *Mutex {
	return &Mutex{h: newHolder(b, name, mutexPrefix+name, func(s *Session) *kvStore { return s.locks }, opts)}
}

// Lock acquires the lock, waiting while another holder has it or earlier
// waiters are in line, and returns the grant's fencing token. A wait is
// woken by a watch on the lock's key and its waiters' tickets, and by a
// timer at the holder's (or the ticket ahead's) expiry, never longer than
// a TTL; it does not poll. Lock returns as
// soon as the grant is confirmed: the watch is stopped in the background
// (Unlock, or Session.Close with WithSession, waits for that, at most
// 2 s).
//
// A token is returned only for a live grant: if the grant ended, or its
// deadline passed, before Lock could return it (the process paused, the
// keepalive failed), Lock gives the key back with a conditional write and
// returns ErrLeaseLost with the cause.
//
// Lock returns ctx's error when ctx ends first (an acquisition whose
// outcome was then unclear is resolved and given back), ErrAlreadyHeld,
// ErrLeaseLost or ErrSessionClosed (a shared session ended),
// ErrInvalidName, ErrInvalidTTL, or the Backend's error.
func (m *Mutex) Lock(ctx context.Context) (uint64, error) {
	return m.h.tracedAcquire(ctx, "lock.Lock", "mutex", m.holderData(), true)
}

// TryLock acquires the lock if it is free and returns the grant's fencing
// token. It makes one attempt (a few bounded requests), and returns a
// token only for a live grant, like Lock.
//
// TryLock returns ErrLocked when another holder has the lock or a Lock
// waits for it (a ticket is queued), and the errors of Lock.
func (m *Mutex) TryLock(ctx context.Context) (uint64, error) {
	return m.h.tracedAcquire(ctx, "lock.TryLock", "mutex", m.holderData(), false)
}

// Unlock releases the lock with a write conditional on the lock's key
// still being this grant's, and revokes the grant's own lease. A Mutex that
// does not hold the lock, or whose lease ended (the key expired or passed
// to another holder), changes nothing and gets ErrNotHeld (wrapped with the
// lease's error, if it ended).
//
// A release whose answer is lost (a timeout) is resolved by reading the
// key back; if the key is no longer the grant's then, Unlock reports
// success, since its write may be what freed it.
//
// Unlock returns ErrNotHeld, ctx's error, or an error when the outcome
// stayed unclear (the key then expires within a TTL). Without WithSession
// it also waits for the watch of the Lock that got the grant to stop (at
// most 2 s, when the node is slow to answer).
func (m *Mutex) Unlock(ctx context.Context) error {
	return m.h.release(ctx)
}

// Token returns the fencing token of the current grant, or 0 when the Mutex
// does not hold the lock.
func (m *Mutex) Token() uint64 { return m.h.token() }

// Done returns a channel that is closed when the current grant ends: on
// Unlock, or when its lease is lost. Without a grant it returns a closed
// channel.
//
// A lost lease closes Done only once the keepalive has run and noticed: a
// process that paused past its deadline finds Done still open when it
// resumes. Check Valid before acting on the lock.
func (m *Mutex) Done() <-chan struct{} { return m.h.done() }

// Deadline returns until when the current grant is surely held (see
// Session.Deadline); after the lease was lost, the last such time. It is
// zero without a grant.
func (m *Mutex) Deadline() time.Time { return m.h.deadline() }

// Valid returns nil while the Mutex surely holds the lock: it has a grant
// whose lease has not ended (Done is open) and whose Deadline is ahead by
// the local clock. It does no I/O. Call it before each write or step done
// under the lock: unlike Done, it reports a lease that a pause carried
// past its deadline at once, before the keepalive has run.
//
// Valid narrows the window, it does not close it: a pause can fall between
// Valid and the write. Writes that must never follow another holder's
// carry the token to a Guard, which refuses them once a newer token has
// reached it.
//
// Valid returns ErrLeaseLost (with the cause) when the grant's lease ended
// or its deadline passed, ErrNotHeld without a grant (never locked, or
// unlocked), ErrInvalidName, or ErrInvalidTTL.
func (m *Mutex) Valid() error { return m.h.valid() }

// holderData is what a grant stores: the WithHolder name, if any.
func (m *Mutex) holderData() []byte {
	if m.h.cfg.holder == "" {
		return nil
	}
	return []byte(m.h.cfg.holder)
}
