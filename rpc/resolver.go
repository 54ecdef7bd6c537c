package rpc

import (
	"context"
	"fmt"
)

// Instance is one reachable instance of a service.
type Instance struct {
	// ID identifies the instance uniquely among the service's instances.
	ID string
	// BaseURL is where the instance serves, like "http://10.0.0.7:8080".
	BaseURL string
	// Zone is the instance's zone, or "".
	Zone string
	// Metadata holds free-form labels.
	Metadata map[string]string
}

// Resolver finds the instances of a service by its discovery name. The
// registry on the coordination node implements it; NewStaticResolver builds
// one from a fixed table. Implementations keep a watch-driven view, so
// Resolve must not make a network round trip on every call.
type Resolver interface {
	// Resolve returns the current instances of service. When none exist it
	// waits until one appears or ctx is done, and then returns an error that
	// wraps ctx.Err(). The caller must not modify the returned slice.
	Resolve(ctx context.Context, service string) ([]Instance, error)
}

// NewStaticResolver returns a Resolver over a fixed table that maps
// discovery names to base URLs. It never waits: resolving a service that has
// no entry fails at once.
func NewStaticResolver(services map[string][]string) Resolver {
	r := make(staticResolver, len(services))
	for name, urls := range services {
		for _, u := range urls {
			r[name] = append(r[name], Instance{ID: u, BaseURL: u})
		}
	}
	return r
}

type staticResolver map[string][]Instance

func (r staticResolver) Resolve(_ context.Context, service string) ([]Instance, error) {
	if insts := r[service]; len(insts) > 0 {
		return insts, nil
	}
	return nil, fmt.Errorf("rpc: static resolver has no instances of %q", service)
}
