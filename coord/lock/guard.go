package lock

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
)

// guardPrefix prefixes the guard's rows in the local store.
const guardPrefix = "concord/fence/"

// Guard enforces fencing tokens where a protected resource is written: it
// admits a write for a resource only if the write's token is at least the
// highest token it has recorded for that resource, and records the token in
// the same local transaction. A holder that lost its lock, because it
// paused or was cut off past its lease, carries an older token than the
// holder after it; once the newer holder has written, the older one's
// writes are refused (ErrStaleToken), even though both believed they held
// the lock.
//
// Tokens come from callers, who can send any number, so a token higher
// than any recorded for the resource is verified before it can raise the
// floor: it must be the token of the current grant of the Mutex named
// resource (or the current term of the Election named resource), as the
// coordination node's stream leader has it. A forged token, or one whose
// lease has already ended, is refused (ErrUnverifiedToken) and recorded
// nowhere, so it cannot lock real holders out. Verification costs one read
// of the lock's key per new token per resource; tokens equal to the highest
// recorded need none. A holder that paused past its lease before its first
// write is therefore refused even when no newer holder has written yet;
// one that paused after writing is refused once a newer holder has
// written, and until then its writes are still admitted: check
// Mutex.Valid (which compares Mutex.Deadline with the clock) before
// writing after anything slow.
//
// The record lives in the instance's local store (Badger, durable before
// each call returns), so it survives restarts. Update makes the check, the
// record and the caller's own writes one serializable transaction: a
// concurrent write with a higher token makes it re-run, and then refuse.
// Check alone records and admits, for writes kept elsewhere; those are
// protected only if no higher token is admitted between the check and the
// write (the rpc fencing interceptor serializes calls per resource for
// this). Tokens are compared per resource name; use the lock's name.
//
// A Guard is safe for concurrent use.
type Guard struct {
	kv localstore.KV
	b  Backend
}

// NewGuard returns a Guard that keeps its records in kv and verifies new
// tokens against the locks and elections on b's coordination node.
func NewGuard(kv localstore.KV, b Backend) *Guard { return &Guard{kv: kv, b: b} }

// Check admits token for resource if it is at least the highest token
// recorded for resource (and, if higher, verified), and records it as the
// highest.
//
// Check returns ErrStaleToken (also for token 0, which no grant has),
// ErrUnverifiedToken, ErrInvalidName, ctx's error, the Backend's error, or
// the local store's error.
func (g *Guard) Check(ctx context.Context, resource string, token uint64) error {
	return g.Update(ctx, resource, token, nil)
}

// Update runs fn in one local transaction with the check and the record of
// Check: fn's writes commit only if token is still admitted at commit. fn
// may be nil. fn may run more than once (on conflicts), so it must have no
// effects other than through tx.
//
// Update returns ErrStaleToken, ErrUnverifiedToken, ErrInvalidName, fn's
// error, ctx's error, the Backend's error, or the local store's error.
func (g *Guard) Update(ctx context.Context, resource string, token uint64, fn func(tx *localstore.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !validName(resource) {
		return fmt.Errorf("%w: %q", ErrInvalidName, resource)
	}
	if token == 0 {
		return fmt.Errorf("%w: %q: token 0", ErrStaleToken, resource)
	}
	// One local transaction when the token is already known (the common
	// case); a token above the record makes it return errVerify, and it
	// runs again once verify has confirmed the token on the node.
	key := []byte(guardPrefix + resource)
	verified := false
	for {
		err := g.kv.Update(func(tx *localstore.Tx) error {
			highest, err := readToken(tx, key)
			if err != nil {
				return err
			}
			if token < highest {
				return fmt.Errorf("%w: %q: token %d, highest seen %d", ErrStaleToken, resource, token, highest)
			}
			if token > highest {
				if !verified {
					return errVerify
				}
				var b [8]byte
				binary.BigEndian.PutUint64(b[:], token)
				if err := tx.Set(key, b[:]); err != nil {
					return err
				}
			}
			if fn == nil {
				return nil
			}
			return fn(tx)
		})
		if !errors.Is(err, errVerify) || verified {
			return err
		}
		if err := g.verify(ctx, resource, token); err != nil {
			return err
		}
		verified = true
	}
}

// errVerify makes Update's transaction stop for a token it has to verify
// on the coordination node first.
var errVerify = errors.New("lock: token to verify")

// verify returns nil if token is the token of the current grant of the
// Mutex named resource, or the current term of the Election named
// resource, as the stream leader has them; otherwise ErrUnverifiedToken.
func (g *Guard) verify(ctx context.Context, resource string, token uint64) error {
	node, err := g.b.Node(ctx)
	if err != nil {
		return fmt.Errorf("lock: verify token for %q: %w", resource, err)
	}
	for _, k := range []struct{ bucket, key string }{
		{coord.BucketLocks, mutexPrefix + resource},
		{coord.BucketElections, electionPrefix + resource},
	} {
		e, err := newKVStore(node, k.bucket).last(ctx, k.key)
		if err != nil {
			return fmt.Errorf("lock: verify token for %q: %w", resource, err)
		}
		if !e.free && e.token == token {
			return nil
		}
	}
	return fmt.Errorf("%w: %q: token %d", ErrUnverifiedToken, resource, token)
}

// Admit is Check for the rpc fencing interceptor (rpc.FencingGuard):
// admitted is false for a stale token, and err reports a failure to decide.
func (g *Guard) Admit(ctx context.Context, resource string, token uint64) (admitted bool, err error) {
	err = g.Check(ctx, resource, token)
	if errors.Is(err, ErrStaleToken) || errors.Is(err, ErrUnverifiedToken) || errors.Is(err, ErrInvalidName) {
		return false, nil
	}
	return err == nil, err
}

// Highest returns the highest token recorded for resource, 0 if none.
func (g *Guard) Highest(resource string) (uint64, error) {
	var highest uint64
	err := g.kv.View(func(tx *localstore.Tx) error {
		var err error
		highest, err = readToken(tx, []byte(guardPrefix+resource))
		return err
	})
	return highest, err
}

func readToken(tx *localstore.Tx, key []byte) (uint64, error) {
	v, err := tx.Get(key)
	switch {
	case errors.Is(err, localstore.ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	case len(v) != 8:
		return 0, fmt.Errorf("lock: guard record %q is corrupt (%d bytes)", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
