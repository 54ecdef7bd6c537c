package lock

import (
	"time"

	"github.com/concordrpc/concord/coord"
)

// EventKind says what an Event reports.
type EventKind uint8

// The kinds of events.
const (
	// EventGranted: Lock, TryLock or Campaign returned a grant.
	EventGranted EventKind = iota + 1
	// EventLeaseLost: a grant ended because its lease was lost (the
	// keepalive failed past the deadline, or the connection closed), not
	// by Unlock or Resign.
	EventLeaseLost
)

// Event is what WithEvents reports. It names no lock: names can come from
// data (one per order, per tenant), and metrics must stay bounded.
type Event struct {
	// Kind is what happened.
	Kind EventKind
	// Lock is "mutex" or "election".
	Lock string
	// Waited is set on a grant that was not had at once: another holder
	// had the key, or another acquisition in this process was ahead.
	Waited bool
	// Wait is how long a blocking acquisition (Lock, Campaign) took, from
	// the call to the grant; 0 for TryLock.
	Wait time.Duration
}

// kind returns "mutex" for the locks bucket and "election" otherwise.
func (s *kvStore) kind() string {
	if s.b.Stream() == "KV_"+coord.BucketLocks {
		return "mutex"
	}
	return "election"
}
