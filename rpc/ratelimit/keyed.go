package ratelimit

import (
	"crypto/sha256"
	"sync"
)

// DefaultMaxKeys bounds the keys a Keyed limiter tracks.
const DefaultMaxKeys = 100_000

// Keyed holds one Limiter per key (a tenant header, a peer address, a
// subject), created on first use. Memory stays bounded: when it tracks
// maxKeys keys and a new one arrives, it evicts every key that has been idle
// long enough to be back at its initial state (for which eviction changes
// nothing), and, if that is not enough, the least recently used half. Only
// that second kind of eviction can admit more than a key's limit, and only
// under a flood of more than maxKeys distinct keys. Keys longer than
// MaxKeyBytes are kept as digests. It is safe for concurrent use.
type Keyed struct {
	cfg     Config
	clock   Clock
	maxKeys int
	idle    int64 // ns after which an unused limiter is back at its initial state

	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	l    *Limiter
	last int64
}

// NewKeyed returns a Keyed limiter; maxKeys <= 0 means DefaultMaxKeys.
func NewKeyed(cfg Config, clock Clock, maxKeys int) (*Keyed, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if clock == nil {
		clock = RealClock()
	}
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	idle := 2 * int64(cfg.Per) // sliding window: two windows forget everything
	if cfg.Algorithm != SlidingWindow {
		idle = int64(cfg.Per) / int64(cfg.Rate) * int64(cfg.Burst+1)
	}
	return &Keyed{cfg: cfg, clock: clock, maxKeys: maxKeys, idle: idle, m: map[string]*keyedEntry{}}, nil
}

// MaxKeyBytes is the longest key a Keyed limiter stores as it is; a
// longer key is stored as its SHA-256 digest, so that memory is bounded by
// bytes as well as by keys (about maxKeys × (MaxKeyBytes + 100) bytes).
const MaxKeyBytes = 64

// Limiter returns the limiter of key, creating it if needed.
func (k *Keyed) Limiter(key string) *Limiter {
	if len(key) > MaxKeyBytes {
		sum := sha256.Sum256([]byte(key))
		key = string(sum[:])
	}
	now := k.clock.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if e, ok := k.m[key]; ok {
		e.last = now
		return e.l
	}
	if len(k.m) >= k.maxKeys {
		k.evictLocked(now)
	}
	l, _ := New(k.cfg, k.clock) // cfg was validated
	k.m[key] = &keyedEntry{l: l, last: now}
	return l
}

// Len returns the number of keys tracked.
func (k *Keyed) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}

func (k *Keyed) evictLocked(now int64) {
	for key, e := range k.m {
		if now-e.last >= k.idle {
			delete(k.m, key)
		}
	}
	if len(k.m) < k.maxKeys {
		return
	}
	// Still full of active keys: drop the least recently used half.
	lasts := make([]int64, 0, len(k.m))
	for _, e := range k.m {
		lasts = append(lasts, e.last)
	}
	cut := nthSmallest(lasts, len(lasts)/2)
	for key, e := range k.m {
		if e.last <= cut && len(k.m) >= k.maxKeys/2 {
			delete(k.m, key)
		}
	}
}

// nthSmallest returns the n-th smallest value (0-based) of xs, reordering xs.
func nthSmallest(xs []int64, n int) int64 {
	lo, hi := 0, len(xs)-1
	for lo < hi {
		p := xs[(lo+hi)/2]
		i, j := lo, hi
		for i <= j {
			for xs[i] < p {
				i++
			}
			for xs[j] > p {
				j--
			}
			if i <= j {
				xs[i], xs[j] = xs[j], xs[i]
				i++
				j--
			}
		}
		switch {
		case n <= j:
			hi = j
		case n >= i:
			lo = i
		default:
			return xs[n]
		}
	}
	return xs[n]
}
