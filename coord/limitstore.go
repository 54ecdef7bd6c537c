package coord

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/concordrpc/concord/coord/internal/condkv"
)

// LimitStore keeps cluster-scoped rate limits on JetStream, in
// BucketLimits: one key per limit, holding the limit's generic-cell-rate
// state (the theoretical arrival time, in Unix nanoseconds). Every grant is
// a conditional write on the key's last message (markers included: a key
// that expired leaves one), so grants are linearizable: concurrent
// instances never both spend the same tokens. A key lives until its state
// no longer matters (its theoretical arrival time has passed) and then
// expires. It implements rpc.LimiterStore.
//
// Instances' clocks are assumed to agree to within a small fraction of the
// limit's period; a clock that runs ahead grants tokens early by its skew.
type LimitStore struct {
	b *condkv.Bucket
}

// ErrLimitContention is returned when a grant lost the race for a limit's
// key too many times in a row.
var ErrLimitContention = errors.New("coord: rate limit state contended")

// LimitStore returns the node's limit store.
func (n *Node) LimitStore(ctx context.Context) (*LimitStore, error) {
	if n.js == nil {
		return nil, ErrClosed
	}
	return &LimitStore{b: condkv.New(n.js, n.nc, BucketLimits)}, nil
}

// Acquire implements rpc.LimiterStore. It never grants tokens with an
// error: on an error, granted is 0.
func (s *LimitStore) Acquire(ctx context.Context, key string, want, rate int, per time.Duration, burst int) (granted int, retry time.Duration, err error) {
	if want < 1 || rate < 1 || per <= 0 || burst < 1 {
		return 0, 0, fmt.Errorf("coord: invalid limit request (want %d, rate %d, per %v, burst %d)", want, rate, per, burst)
	}
	t := int64(per) / int64(rate)
	tau := t * int64(burst-1)
	err = s.update(ctx, key, func(tat, now int64) int64 {
		tat = max(tat, now)
		if tat-now > tau {
			granted, retry = 0, time.Duration(tat-now-tau)
			return -1 // nothing to write
		}
		granted, retry = int(min(int64(want), (now+tau-tat)/t+1)), 0
		return tat + int64(granted)*t
	})
	if err != nil {
		return 0, 0, err
	}
	return granted, retry, nil
}

// Release implements rpc.LimiterStore: it moves the state back by the
// unspent tokens, never past what a full bucket allows.
func (s *LimitStore) Release(ctx context.Context, key string, tokens, rate int, per time.Duration) error {
	if tokens < 1 || rate < 1 || per <= 0 {
		return nil
	}
	t := int64(per) / int64(rate)
	return s.update(ctx, key, func(tat, now int64) int64 {
		if tat <= now {
			return -1
		}
		return max(tat-int64(tokens)*t, now)
	})
}

// stateTTL is how long a key must live for a state next at now: until the
// theoretical arrival time has passed (after which the state equals that
// of a key with no message), rounded up to JetStream's whole seconds, plus
// a second of margin.
func stateTTL(next, now int64) time.Duration {
	d := time.Duration(max(next-now, 0))
	return (d + time.Second - 1).Truncate(time.Second) + time.Second
}

// update applies f to the key's state with a conditional write, retrying
// when another instance wrote first. f returns the new state, or -1 to
// write nothing.
func (s *LimitStore) update(ctx context.Context, key string, f func(tat, now int64) int64) error {
	k := limitKey(key)
	for attempt := 0; attempt < 100; attempt++ {
		e, err := s.b.Last(ctx, k)
		if err != nil {
			return fmt.Errorf("coord: read limit %s: %w", k, err)
		}
		var tat int64
		if e.Live && len(e.Data) == 8 {
			tat = int64(binary.BigEndian.Uint64(e.Data))
		}
		now := time.Now().UnixNano()
		next := f(tat, now)
		if next < 0 {
			return nil
		}
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], uint64(next))
		_, err = s.b.Put(ctx, k, buf[:], nil, e.Seq, stateTTL(next, now))
		if err == nil {
			return nil
		}
		if !IsConflict(err) {
			return fmt.Errorf("coord: write limit %s: %w", k, err)
		}
		// Another instance wrote first: read again.
	}
	return fmt.Errorf("%w: %s", ErrLimitContention, k)
}

// limitKey maps any limit key to a valid KV key of fixed size (SHA-256 in
// unpadded base64url, 44 characters after the "k"): keys may carry
// caller-derived values, and a long one would exceed what a NATS subject
// may hold (the server then closes the connection).
func limitKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "k" + base64.RawURLEncoding.EncodeToString(sum[:])
}
