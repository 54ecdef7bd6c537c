package coord

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LimitStore keeps cluster-scoped rate limits on JetStream, in
// BucketLimits: one key per limit, holding the limit's generic-cell-rate
// state (the theoretical arrival time, in Unix nanoseconds). Every grant is
// a conditional write on the key's last revision, so grants are
// linearizable: concurrent instances never both spend the same tokens.
// It implements rpc.LimiterStore.
//
// Instances' clocks are assumed to agree to within a small fraction of the
// limit's period; a clock that runs ahead grants tokens early by its skew.
type LimitStore struct {
	kv jetstream.KeyValue
	js jetstream.JetStream
}

// ErrLimitContention is returned when a grant lost the race for a limit's
// key too many times in a row.
var ErrLimitContention = errors.New("coord: rate limit state contended")

// LimitStore returns the node's limit store.
func (n *Node) LimitStore(ctx context.Context) (*LimitStore, error) {
	kv, err := n.js.KeyValue(ctx, BucketLimits)
	if err != nil {
		return nil, fmt.Errorf("coord: limit store: %w", err)
	}
	return &LimitStore{kv: kv, js: n.js}, nil
}

// limitTTL keeps an idle limit's state around long enough that dropping it
// changes nothing: after (burst+1) emission intervals a bucket is full.
func limitTTL(rate int, per time.Duration, burst int) time.Duration {
	ttl := per / time.Duration(rate) * time.Duration(burst+1)
	return max(ttl.Round(time.Second)+time.Second, 2*time.Second)
}

// Acquire implements rpc.LimiterStore.
func (s *LimitStore) Acquire(ctx context.Context, key string, want, rate int, per time.Duration, burst int) (int, time.Duration, error) {
	if want < 1 || rate < 1 || per <= 0 || burst < 1 {
		return 0, 0, fmt.Errorf("coord: invalid limit request (want %d, rate %d, per %v, burst %d)", want, rate, per, burst)
	}
	t := int64(per) / int64(rate)
	tau := t * int64(burst-1)
	var granted int
	var retry time.Duration
	err := s.update(ctx, key, limitTTL(rate, per, burst), func(tat, now int64) int64 {
		tat = max(tat, now)
		if tat-now > tau {
			granted, retry = 0, time.Duration(tat-now-tau)
			return -1 // nothing to write
		}
		granted = int(min(int64(want), (now+tau-tat)/t+1))
		return tat + int64(granted)*t
	})
	return granted, retry, err
}

// Release implements rpc.LimiterStore: it moves the state back by the
// unspent tokens, never past what a full bucket allows.
func (s *LimitStore) Release(ctx context.Context, key string, tokens, rate int, per time.Duration) error {
	if tokens < 1 || rate < 1 || per <= 0 {
		return nil
	}
	t := int64(per) / int64(rate)
	return s.update(ctx, key, 0, func(tat, now int64) int64 {
		if tat <= now {
			return -1
		}
		return max(tat-int64(tokens)*t, now)
	})
}

// update applies f to the key's state with a conditional write, retrying
// when another instance wrote first. f returns the new state, or -1 to
// write nothing. ttl > 0 sets the key's time to live.
func (s *LimitStore) update(ctx context.Context, key string, ttl time.Duration, f func(tat, now int64) int64) error {
	k := limitKey(key)
	subject := "$KV." + BucketLimits + "." + k
	for attempt := 0; attempt < 100; attempt++ {
		var tat int64
		var lastSeq uint64
		entry, err := s.kv.Get(ctx, k)
		switch {
		case err == nil:
			lastSeq = entry.Revision()
			if v := entry.Value(); len(v) == 8 {
				tat = int64(binary.BigEndian.Uint64(v))
			}
		case errors.Is(err, jetstream.ErrKeyNotFound):
		default:
			return fmt.Errorf("coord: read limit %s: %w", k, err)
		}
		now := time.Now().UnixNano()
		next := f(tat, now)
		if next < 0 {
			return nil
		}
		opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(lastSeq)}
		if ttl > 0 {
			opts = append(opts, jetstream.WithMsgTTL(ttl))
		}
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], uint64(next))
		_, err = s.js.Publish(ctx, subject, buf[:], opts...)
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
