package registry

import "errors"

// Errors returned by this package, wrapped with %w; match them with
// errors.Is.
var (
	// ErrClosed is returned by a closed Registrar or Resolver.
	ErrClosed = errors.New("registry: closed")
	// ErrInvalidRegistration is returned for a bad service name, instance
	// ID, base URL, TTL or oversized record.
	ErrInvalidRegistration = errors.New("registry: invalid registration")
	// ErrDuplicateID is returned when another live registrar keeps
	// refreshing the lease on the same service and instance ID.
	ErrDuplicateID = errors.New("registry: instance ID held by another live instance")
	// ErrNoInstances is returned when a service has no ready instance: at
	// once with ResolverFailFast, else when the caller's context ends (the
	// error then also wraps ctx.Err()).
	ErrNoInstances = errors.New("registry: no ready instance")
)
