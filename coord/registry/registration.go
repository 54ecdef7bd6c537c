package registry

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"

	"github.com/concordrpc/concord/rpc"
)

// maxRecordLen caps a registration's JSON encoding, in bytes.
const maxRecordLen = 32 << 10

// Registration describes one instance of a service. It is stored as JSON
// in coord.BucketRegistry under the key "<service>.<id>", each part escaped
// into one key token.
type Registration struct {
	// Service is the discovery name clients resolve, like
	// "greeter.v1.GreeterService". 1 to 255 bytes; any bytes are allowed.
	Service string `json:"service"`
	// ID identifies the instance among the service's instances, 1 to 255
	// bytes. Register generates a random one (128 bits, hex) when empty.
	ID string `json:"id"`
	// Version is the instance's software version, free-form.
	Version string `json:"version,omitempty"`
	// BaseURL is where the instance serves, an absolute http or https URL
	// like "http://127.0.0.1:8080".
	BaseURL string `json:"base_url"`
	// Zone is the instance's zone, or "".
	Zone string `json:"zone,omitempty"`
	// Metadata holds free-form labels. Register copies the map.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Ready reports whether the instance takes traffic. Resolvers return
	// only ready instances.
	Ready bool `json:"ready"`
}

// instance converts a registration to what rpc's client balances over.
func (g *Registration) instance() rpc.Instance {
	return rpc.Instance{ID: g.ID, BaseURL: g.BaseURL, Zone: g.Zone, Metadata: g.Metadata}
}

// normalize checks g, fills in a missing ID and copies the metadata.
func (g *Registration) normalize() error {
	if err := checkName("service", g.Service); err != nil {
		return err
	}
	if g.ID == "" {
		id, err := newID()
		if err != nil {
			return err
		}
		g.ID = id
	}
	if err := g.check(); err != nil {
		return err
	}
	g.Metadata = maps.Clone(g.Metadata)
	return nil
}

// check checks g's instance ID and base URL.
func (g *Registration) check() error {
	if err := checkName("instance ID", g.ID); err != nil {
		return err
	}
	u, err := url.Parse(g.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: base URL %q: want an absolute http or https URL like http://127.0.0.1:8080", ErrInvalidRegistration, g.BaseURL)
	}
	return nil
}

// encode returns g's stored form.
func (g *Registration) encode() ([]byte, error) {
	b, err := json.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRegistration, err)
	}
	if len(b) > maxRecordLen {
		return nil, fmt.Errorf("%w: %d bytes of JSON, more than %d", ErrInvalidRegistration, len(b), maxRecordLen)
	}
	return b, nil
}

// decodeRegistration parses a stored registration whose key named service
// and id. Records that do not parse or disagree with their key are
// rejected, never trusted: anything that can write to the bucket could
// otherwise point clients anywhere.
func decodeRegistration(data []byte, service, id string) (Registration, error) {
	if len(data) > maxRecordLen {
		return Registration{}, fmt.Errorf("registry: record for %q/%q: %d bytes, more than %d", service, id, len(data), maxRecordLen)
	}
	var g Registration
	if err := json.Unmarshal(data, &g); err != nil {
		return Registration{}, fmt.Errorf("registry: bad record for %q/%q: %w", service, id, err)
	}
	if g.Service != service || g.ID != id {
		return Registration{}, fmt.Errorf("registry: record under %q/%q names %q/%q", service, id, g.Service, g.ID)
	}
	if err := g.check(); err != nil {
		return Registration{}, fmt.Errorf("registry: record for %q/%q: %w", service, id, err)
	}
	return g, nil
}

// newID returns a random instance ID.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("registry: instance ID: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
