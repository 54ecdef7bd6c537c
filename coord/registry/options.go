package registry

import (
	"log/slog"
	"time"
)

// Defaults.
const (
	// DefaultTTL is a registration's lease: it lapses this long after the
	// last heartbeat of a registrar that stopped without deregistering.
	DefaultTTL = 5 * time.Second
	// DefaultRelistInterval is how often a Resolver re-reads each watched
	// service in full, to repair watch events it may have missed.
	DefaultRelistInterval = 10 * time.Second
)

// Option configures Register.
type Option interface{ apply(*regConfig) }

type regConfig struct {
	ttl    time.Duration
	logger *slog.Logger
}

type regOption func(*regConfig)

func (f regOption) apply(c *regConfig) { f(c) }

// WithTTL sets the registration's lease. JetStream counts TTLs in whole
// seconds, so ttl is rounded up to one; Register rejects a ttl under 1s
// with ErrInvalidRegistration. Heartbeats refresh the lease every ttl/3.
// Default: DefaultTTL.
func WithTTL(ttl time.Duration) Option {
	return regOption(func(c *regConfig) { c.ttl = ttl })
}

// WithLogger routes the registrar's logs (lost leases, re-registrations,
// failing heartbeats) to l. Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return regOption(func(c *regConfig) {
		if l != nil {
			c.logger = l
		}
	})
}

// ResolverOption configures NewResolver.
type ResolverOption interface{ apply(*resConfig) }

type resConfig struct {
	failFast bool
	relist   time.Duration
	logger   *slog.Logger
}

type resOption func(*resConfig)

func (f resOption) apply(c *resConfig) { f(c) }

// ResolverFailFast makes Resolve fail with ErrNoInstances as soon as the
// service's view is loaded and holds no ready instance, instead of waiting
// for one to appear. Resolve still waits for the view's first load (one
// round trip to the node) on a service's first use. Default: wait.
func ResolverFailFast() ResolverOption {
	return resOption(func(c *resConfig) { c.failFast = true })
}

// ResolverRelistInterval sets how often each watched service is re-read in
// full (a fresh watcher replaces the running one), which bounds how long a
// missed watch event can leave the view stale. Each re-read creates one
// ephemeral consumer per watched service. Values under 100ms are raised to
// 100ms. Default: DefaultRelistInterval.
func ResolverRelistInterval(d time.Duration) ResolverOption {
	return resOption(func(c *resConfig) { c.relist = max(d, 100*time.Millisecond) })
}

// ResolverLogger routes the resolver's logs (failing watches, bad
// records) to l. Default: slog.Default().
func ResolverLogger(l *slog.Logger) ResolverOption {
	return resOption(func(c *resConfig) {
		if l != nil {
			c.logger = l
		}
	})
}
