package lock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord/lock"
)

// contender adapts a Mutex or an Election for table tests.
type contender struct {
	acquire func(context.Context) (uint64, error) // the acquisition under test
	wait    func(context.Context) (uint64, error) // an acquisition that waits
	token   func() uint64
	valid   func() error
	release func(context.Context) error
}

func mutexContender(m *lock.Mutex, try bool) contender {
	c := contender{acquire: m.Lock, wait: m.Lock, token: m.Token, valid: m.Valid, release: m.Unlock}
	if try {
		c.acquire = m.TryLock
	}
	return c
}

func electionContender(e *lock.Election) contender {
	campaign := func(ctx context.Context) (uint64, error) { return e.Campaign(ctx, "candidate") }
	return contender{acquire: campaign, wait: campaign, token: e.Term, valid: e.Valid, release: e.Resign}
}

// TestLostGrantNeverReturned lets a grant's lease end between its grant
// and its return (the grantee's keepalive is stopped past its 1s lease,
// through a test hook, while another contender takes the key): Lock,
// TryLock and Campaign return ErrLeaseLost and no token, and the other
// holder keeps the key. Only the keepalive stops; no process is paused
// (TestStoppedProcessLosesLock does that with SIGSTOP).
func TestLostGrantNeverReturned(t *testing.T) {
	n := openNode(t)
	b := lock.FromNode(n)
	for _, tc := range []struct {
		name string
		make func(name string, opts ...lock.Option) contender
	}{
		{"Lock", func(name string, opts ...lock.Option) contender {
			return mutexContender(lock.NewMutex(b, name, opts...), false)
		}},
		{"TryLock", func(name string, opts ...lock.Option) contender {
			return mutexContender(lock.NewMutex(b, name, opts...), true)
		}},
		{"Campaign", func(name string, opts ...lock.Option) contender {
			return electionContender(lock.NewElection(b, name, opts...))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := within(t, 30*time.Second)
			name := "lost-" + tc.name
			other := tc.make(name, lock.WithTTL(5*time.Second))
			var taken uint64
			var takeErr error
			paused := tc.make(name, lock.WithTTL(time.Second), lock.WithGrantedHookForTest(func(s *lock.Session) {
				s.SetPausedForTest(true) // the grantee's keepalive stops (only it)
				defer s.SetPausedForTest(false)
				taken, takeErr = other.wait(ctx) // until the paused grant expired
			}))
			token, err := paused.acquire(ctx)
			if takeErr != nil {
				t.Fatalf("the other contender: %v", takeErr)
			}
			if !errors.Is(err, lock.ErrLeaseLost) || token != 0 {
				t.Fatalf("got token %d, %v; want ErrLeaseLost and no token (another holds token %d)", token, err, taken)
			}
			t.Logf("returned: %v", err)
			if paused.token() != 0 || paused.valid() == nil {
				t.Fatalf("after ErrLeaseLost: token %d, Valid %v", paused.token(), paused.valid())
			}
			// The other holder's grant is untouched by the give-back.
			if err := other.valid(); err != nil || other.token() != taken {
				t.Fatalf("the other holder: token %d (took %d), Valid %v", other.token(), taken, err)
			}
			if err := other.release(ctx); err != nil {
				t.Fatalf("the other holder's release: %v (its grant was lost)", err)
			}
		})
	}
}

// TestUnclearReleaseGivesNoHint makes a release's answer get lost after it
// committed, while another holder takes the key: Unlock resolves it by
// reading the key, and the next Lock, which may use the release as a hint
// to skip its read, does not overwrite the other holder's live grant.
func TestUnclearReleaseGivesNoHint(t *testing.T) {
	n := openNode(t)
	b := lock.FromNode(n)
	ctx := within(t, 30*time.Second)
	other := lock.NewMutex(b, "unclear-release", lock.WithTTL(5*time.Second))
	var taken uint64
	var takeErr error
	lost := false
	a := lock.NewMutex(b, "unclear-release", lock.WithTTL(5*time.Second),
		lock.WithReleasedHookForTest(func(seq uint64, err error) (uint64, error) {
			if err != nil || lost {
				return seq, err
			}
			// The release committed and its answer is lost; the key is free,
			// and the other contender takes it before a reads it back.
			lost = true
			taken, takeErr = other.TryLock(ctx)
			return 0, context.DeadlineExceeded
		}))
	ta, err := a.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatalf("Unlock with a lost answer: %v, want nil (its write freed the key)", err)
	}
	if !lost || takeErr != nil || taken <= ta {
		t.Fatalf("the other contender: token %d after %d, %v", taken, ta, takeErr)
	}
	if tok, err := a.Lock(within(t, 500*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while another holds: token %d, %v; want context.DeadlineExceeded", tok, err)
	}
	if tok, err := a.TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock while another holds: token %d, %v; want ErrLocked", tok, err)
	}
	if err := other.Valid(); err != nil {
		t.Fatalf("the other holder's Valid: %v", err)
	}
	if err := other.Unlock(ctx); err != nil {
		t.Fatalf("the other holder's Unlock: %v (its grant was overwritten)", err)
	}
}
