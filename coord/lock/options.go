package lock

import (
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Defaults.
const (
	// DefaultTTL is a lease's time to live. A crashed holder's locks are
	// free again at most this long after its last keepalive.
	DefaultTTL = 10 * time.Second
	// DefaultOpTimeout bounds one request to the coordination node. A
	// request that times out has an unclear outcome, which the package
	// resolves by reading back (see the package doc).
	DefaultOpTimeout = 2 * time.Second
	// MaxNameLen is the longest lock or election name.
	MaxNameLen = 512
	// MaxHolderLen is the longest holder name (WithHolder), in bytes.
	MaxHolderLen = 256
)

// Option configures a Session, Mutex or Election. Options that do not apply
// to what they are given to are ignored.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	ttl       time.Duration
	opTimeout time.Duration
	session   *Session
	holder    string
	events    func(Event)
	tracer    trace.Tracer // WithTracerProvider's; nil: no spans
	hooks     *testHooks   // nil outside tests
}

// testHooks let tests act at moments no real fault reaches on cue. Only
// export_test.go sets them.
type testHooks struct {
	// granted runs when an acquisition has its grant, before Lock,
	// TryLock or Campaign checks that the grant is still live and
	// returns it.
	granted func(*Session)
	// queued runs when Lock or Campaign has its place: once its ticket
	// is published (acknowledged), before it waits in line, or when it
	// took a key that was free with no ticket waiting.
	queued func(*Session)
	// released replaces the answer to a release's conditional write.
	released func(seq uint64, err error) (uint64, error)
}

func newConfig(opts []Option) config {
	c := config{ttl: DefaultTTL, opTimeout: DefaultOpTimeout}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

func (c config) validate() error {
	if c.ttl < time.Second || c.ttl%time.Second != 0 {
		return fmt.Errorf("%w: got %v", ErrInvalidTTL, c.ttl)
	}
	return nil
}

// WithTTL sets the lease's time to live, a whole number of seconds of at
// least one second. The lease is refreshed every TTL/3; a holder that cannot
// refresh it for a TTL loses it. Shorter TTLs free a crashed holder's locks
// sooner and lose a paused or partitioned holder's locks sooner. Applies to
// NewSession, and to NewMutex and NewElection without WithSession. Default:
// DefaultTTL.
func WithTTL(ttl time.Duration) Option {
	return optionFunc(func(c *config) { c.ttl = ttl })
}

// WithOpTimeout bounds each request to the coordination node (an
// acquisition attempt, a keepalive, a release, a read). Default:
// DefaultOpTimeout.
func WithOpTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.opTimeout = d
		}
	})
}

// WithSession makes a Mutex or Election hold its key under s's lease, shared
// with everything else s holds, instead of a lease of its own per grant.
// The Mutex or Election then never closes s. Default: a new lease for each
// grant, revoked on Unlock or Resign.
func WithSession(s *Session) Option {
	return optionFunc(func(c *config) { c.session = s })
}

// WithHolder names who holds a Mutex: the name is stored with each grant
// (at most MaxHolderLen bytes; longer is cut) and shown by ReadStatus and
// the status endpoint. It is for people, not checked by anything. Applies
// to NewMutex (an Election stores its Campaign value instead). Default:
// none, and ReadStatus shows the grant's random attempt ID. A Concord App
// gives its host and process ID.
func WithHolder(name string) Option {
	return optionFunc(func(c *config) {
		if len(name) > MaxHolderLen {
			name = name[:MaxHolderLen]
		}
		c.holder = name
	})
}

// WithEvents has f called with each grant and each lost lease, for
// metrics (package metrics counts them). f runs on the goroutine that
// acquired the grant or ran the keepalive, so it must be fast and safe for
// concurrent use. A lost lease is reported by the Session that held it:
// pass WithEvents to NewSession for grants under WithSession. Applies to
// NewMutex, NewElection and NewSession. Default: none.
func WithEvents(f func(Event)) Option {
	return optionFunc(func(c *config) { c.events = f })
}
