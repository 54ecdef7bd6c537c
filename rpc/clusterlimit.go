package rpc

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// clusterLimit spends tokens of a cluster-scoped limit from a local pool
// that it refills from a LimiterStore in batches, so that a decision is a
// local operation and the store sees one request per batch. A refill starts
// in the background when the pool runs half empty; a call that finds the
// pool empty waits for the refill in flight. Tokens are spent within a
// lease after they were granted, then forfeited.
//
// Batches are sized from the rate and the number of instances sharing the
// limit (WithInstanceCount): about 100ms of the rate split among them, so
// that together the instances hold about 100ms of tokens.
//
// Bound: every admitted call spends a token that the store granted under
// its token bucket, so admissions across all instances stay within
// rate*t + burst over any interval t, plus a slack of the tokens held in
// local pools (about rate/10 in all; at most instances*batch), spent up to
// one lease late.
type clusterLimit struct {
	store  LimiterStore
	key    string
	policy *RateLimitPolicy
	batch  int
	lease  time.Duration
	count  func() int // instances sharing the limit, or nil
	// granted, if set, counts the tokens the store granted.
	granted *atomic.Uint64

	mu         sync.Mutex
	tokens     int
	expires    time.Time
	refill     chan struct{} // non-nil while a refill is in flight; closed when it ends
	refillErr  error         // the last refill's error
	emptyUntil time.Time     // the store had no token until then
}

// clusterBatch sizes a refill: about 100ms of the limit's rate divided
// among the instances, at least 1, at most the burst.
func clusterBatch(p *RateLimitPolicy, instances int) int {
	instances = max(instances, 1)
	b := int((int64(p.Rate)*int64(100*time.Millisecond) + int64(p.Per)*int64(instances) - 1) / (int64(p.Per) * int64(instances)))
	return max(1, min(b, p.Burst))
}

func newClusterLimit(store LimiterStore, key string, p *RateLimitPolicy, count func() int) *clusterLimit {
	// The first refill, in the background, counts the instances.
	return &clusterLimit{store: store, key: key, policy: p, lease: min(p.Per, time.Second), count: count, batch: clusterBatch(p, 1)}
}

func (c *clusterLimit) instances() int {
	if c.count == nil {
		return 1
	}
	return c.count()
}

// take spends a token, or returns the delay until one may be available. It
// returns an error when the store failed; the caller then limits locally.
func (c *clusterLimit) take(ctx context.Context) (bool, time.Duration, error) {
	for pass := 0; ; pass++ {
		now := time.Now()
		c.mu.Lock()
		if !c.expires.After(now) {
			c.tokens = 0
		}
		if c.tokens > 0 {
			c.tokens--
			if c.tokens <= c.batch/2 && c.refill == nil {
				c.startRefillLocked()
			}
			c.mu.Unlock()
			return true, 0, nil
		}
		if pass > 0 && c.refillErr != nil {
			err := c.refillErr
			c.mu.Unlock()
			return false, 0, err
		}
		if now.Before(c.emptyUntil) || pass > 1 {
			wait := max(c.emptyUntil.Sub(now), time.Millisecond)
			c.mu.Unlock()
			return false, wait, nil
		}
		if c.refill == nil {
			c.startRefillLocked()
		}
		done := c.refill
		c.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return false, 0, ctx.Err()
		}
	}
}

// startRefillLocked asks the store for a batch in the background.
func (c *clusterLimit) startRefillLocked() {
	done := make(chan struct{})
	c.refill = done
	go func() {
		if c.count != nil { // the number of instances may have changed
			batch := clusterBatch(c.policy, c.instances())
			c.mu.Lock()
			c.batch = batch
			c.mu.Unlock()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		p := c.policy
		c.mu.Lock()
		batch := c.batch
		c.mu.Unlock()
		granted, retry, err := c.store.Acquire(ctx, c.key, batch, p.Rate, p.Per, p.Burst)
		cancel()
		now := time.Now()
		c.mu.Lock()
		c.refillErr = err
		if err == nil && granted > 0 {
			if c.granted != nil {
				c.granted.Add(uint64(granted))
			}
			if !c.expires.After(now) {
				c.tokens = 0
			}
			c.tokens += granted
			c.expires = now.Add(c.lease)
		} else if err == nil {
			c.emptyUntil = now.Add(retry)
		}
		c.refill = nil
		c.mu.Unlock()
		close(done)
	}()
}
