package rpc

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// SaturationWindow is the period over which LimitStatus.Saturation is
// counted: the current window of this length and the one before it.
const SaturationWindow = 10 * time.Second

// LimitStatus is one method's rate limit as the server's admission
// interceptor applies it, with what it decided since the server started.
// It is for status pages and metrics.
type LimitStatus struct {
	// Procedure is the limited method's path.
	Procedure string `json:"procedure"`
	// Algorithm is "token_bucket", "sliding_window" or "leaky_bucket".
	Algorithm string `json:"algorithm"`
	// Scope is "local" (each instance counts on its own) or "cluster"
	// (the instances share the limit through the LimiterStore).
	Scope string `json:"scope"`
	// Key is what selects a limiter: "none" (one for the method),
	// "header", "peer" or "subject" (one per value, each limited alone).
	Key string `json:"key"`
	// Rate, PerMillis and Burst are the policy's: Rate calls per PerMillis
	// milliseconds, and the bucket (or queue) size.
	Rate      int   `json:"rate"`
	PerMillis int64 `json:"per_ms"`
	Burst     int   `json:"burst"`
	// Admitted and Refused count the calls the limit admitted and refused
	// (resource_exhausted) since the server started, on this instance. A
	// caller that gave up while a leaky bucket queued it counts as
	// neither.
	Admitted uint64 `json:"admitted"`
	Refused  uint64 `json:"refused"`
	// Borrowed counts the tokens a cluster-scoped limit was granted by the
	// LimiterStore, in batches, since the server started (0 for local
	// limits, or without a store).
	Borrowed uint64 `json:"borrowed"`
	// Saturation is the share of calls the limit refused recently:
	// refused / (admitted + refused) over the current SaturationWindow and
	// the one before it (so over the last 10 to 20 seconds), 0 when there
	// were no calls. 0 means the limit is not biting; 1 means it refuses
	// every call. It answers the operator's question "is this limit
	// turning callers away now?", whatever the key and algorithm.
	Saturation float64 `json:"saturation"`
}

// LimitStatus returns every registered method's rate limit, sorted by
// procedure, with the counts of the default admission interceptor. It
// returns nil when the admission slot was replaced (WithAdmission), whose
// decisions the server cannot see. It is cheap (no I/O) and safe for
// concurrent use.
func (s *Server) LimitStatus() []LimitStatus {
	if s.admission == nil {
		return nil
	}
	s.mu.Lock()
	var limited []*MethodPolicy
	for _, m := range s.policies {
		if m.RateLimit != nil {
			limited = append(limited, m)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(limited, func(x, y *MethodPolicy) int { return cmp.Compare(x.Procedure, y.Procedure) })
	now := s.admission.cfg.clock.Now()
	out := make([]LimitStatus, 0, len(limited))
	for _, m := range limited {
		p := m.RateLimit
		ls := LimitStatus{
			Procedure: m.Procedure, Algorithm: p.Algorithm.String(), Scope: "local", Key: keyKindName(p.Key),
			Rate: p.Rate, PerMillis: p.Per.Milliseconds(), Burst: p.Burst,
		}
		if p.Scope == ScopeCluster {
			ls.Scope = "cluster"
		}
		if v, ok := s.admission.limits.Load(m.Procedure); ok {
			ml := v.(*methodLimit)
			ls.Admitted, ls.Refused = ml.counts.admitted.Load(), ml.counts.refused.Load()
			ls.Borrowed = ml.borrowed.Load()
			ls.Saturation = ml.counts.saturation(now)
		}
		out = append(out, ls)
	}
	return out
}

// ShedCalls returns how many calls the default admission interceptor shed
// since the server started, past WithMaxInFlight (0 with WithAdmission).
func (s *Server) ShedCalls() uint64 {
	if s.admission == nil {
		return 0
	}
	return s.admission.shed.Load()
}

func keyKindName(k KeyKind) string {
	switch k {
	case KeyNone:
		return "none"
	case KeyHeader:
		return "header"
	case KeyPeer:
		return "peer"
	case KeySubject:
		return "subject"
	}
	return "unknown"
}

// limitCounts counts a limit's decisions: totals since start, and the
// admitted and refused calls of the current and the previous
// SaturationWindow.
type limitCounts struct {
	admitted, refused atomic.Uint64

	mu        sync.Mutex
	slot      int64     // the current window: clock time / SaturationWindow
	cur, prev [2]uint64 // admitted, refused
}

// record counts a decision at now (the admission clock's time).
func (c *limitCounts) record(now int64, admitted bool) {
	i := 1
	if admitted {
		c.admitted.Add(1)
		i = 0
	} else {
		c.refused.Add(1)
	}
	c.mu.Lock()
	c.rollLocked(now)
	c.cur[i]++
	c.mu.Unlock()
}

func (c *limitCounts) saturation(now int64) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rollLocked(now)
	a, r := c.cur[0]+c.prev[0], c.cur[1]+c.prev[1]
	if a+r == 0 {
		return 0
	}
	return float64(r) / float64(a+r)
}

func (c *limitCounts) rollLocked(now int64) {
	slot := now / int64(SaturationWindow)
	switch slot {
	case c.slot:
		return
	case c.slot + 1:
		c.prev, c.cur = c.cur, [2]uint64{}
	default:
		c.prev, c.cur = [2]uint64{}, [2]uint64{}
	}
	c.slot = slot
}
