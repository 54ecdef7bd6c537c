package lock

import "errors"

// Errors returned by the package. Each method's doc names the ones it
// returns; they are wrapped with %w, so test them with errors.Is.
var (
	// ErrNotHeld is returned by Mutex.Unlock when the Mutex does not hold
	// the lock: it never acquired it, already released it, or its lease
	// ended and the key is gone or belongs to another holder. Nothing was
	// changed on the server.
	ErrNotHeld = errors.New("lock: not held")
	// ErrLocked is returned by Mutex.TryLock when another holder has the
	// lock.
	ErrLocked = errors.New("lock: held by another holder")
	// ErrAlreadyHeld is returned by Mutex.Lock and TryLock when the same
	// Mutex already holds the lock, and by Election.Campaign when the same
	// Election is already leader.
	ErrAlreadyHeld = errors.New("lock: already held by this holder")
	// ErrLeaseLost is reported when a lease ended without being revoked:
	// a keepalive was refused (the key expired and may have a new holder),
	// no keepalive succeeded before the lease's deadline, or the connection
	// to the coordination node closed.
	ErrLeaseLost = errors.New("lock: lease lost")
	// ErrSessionClosed is returned by operations on a closed Session.
	ErrSessionClosed = errors.New("lock: session closed")
	// ErrInvalidName is returned for a lock or election name that is not a
	// valid key: use letters, digits and "-/_=", with "." between
	// non-empty parts, at most MaxNameLen bytes.
	ErrInvalidName = errors.New("lock: invalid name")
	// ErrInvalidTTL is returned for a TTL that is not a whole number of
	// seconds of at least one second (JetStream's per-message TTLs are
	// whole seconds).
	ErrInvalidTTL = errors.New("lock: TTL must be a whole number of seconds, at least 1s")
	// ErrStaleToken is returned by Guard when a fencing token is lower than
	// the highest token the guard has recorded for the resource.
	ErrStaleToken = errors.New("lock: stale fencing token")
	// ErrUnverifiedToken is returned by Guard for a token higher than any
	// it has recorded for the resource that is not the token of the
	// resource's current grant (or election term) on the coordination
	// node: a forged token, or one whose lease has already ended.
	ErrUnverifiedToken = errors.New("lock: fencing token not issued for this resource, or its lease ended")
	// ErrNotLeader is returned by Election.Resign when the Election is not
	// the leader.
	ErrNotLeader = errors.New("lock: not the leader")
	// ErrNoLeader is returned by Election.Leader when the election has no
	// leader.
	ErrNoLeader = errors.New("lock: no leader")
)
