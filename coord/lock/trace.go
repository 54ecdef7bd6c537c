package lock

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/concordrpc/concord/internal/spanerr"
)

// tracerName is the instrumentation scope of the package's spans.
const tracerName = "github.com/concordrpc/concord/coord/lock"

// Span attributes.
const (
	attrName     = attribute.Key("concord.lock.name")
	attrKind     = attribute.Key("concord.lock.kind") // "mutex" or "election"
	attrToken    = attribute.Key("concord.lock.token")
	attrAcquired = attribute.Key("concord.lock.acquired")
)

// WithTracerProvider makes Lock, TryLock and Campaign record a span (named
// "lock.Lock", "lock.TryLock" or "lock.Campaign") that covers the whole
// acquisition, the wait for the holder before included, with the lock's
// name (concord.lock.name, at most MaxNameLen bytes) and, once granted,
// the fencing token or term (concord.lock.token). A TryLock that finds the
// lock held is not an error: its span says concord.lock.acquired=false.
// Applies to NewMutex and NewElection. Default: no spans.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) {
		if tp != nil {
			c.tracer = tp.Tracer(tracerName)
		}
	})
}

// tracedAcquire is h.acquire inside a span named op when tracing is on.
func (h *holder) tracedAcquire(ctx context.Context, op, kind string, data []byte, wait bool) (uint64, error) {
	if h.cfg.tracer == nil {
		return h.acquire(ctx, data, wait)
	}
	ctx, span := h.cfg.tracer.Start(ctx, op, trace.WithAttributes(attrName.String(h.name), attrKind.String(kind)))
	defer span.End()
	token, err := h.acquire(ctx, data, wait)
	switch {
	case err == nil:
		span.SetAttributes(attrAcquired.Bool(true), attrToken.Int64(int64(token)))
	case errors.Is(err, ErrLocked):
		span.SetAttributes(attrAcquired.Bool(false))
	default:
		span.SetAttributes(attrAcquired.Bool(false))
		spanerr.Set(span, err)
	}
	return token, err
}
