package lock

import (
	"context"
	"fmt"
	"regexp"

	"github.com/concordrpc/concord/coord"
)

// Backend gives locks and elections their coordination node, waiting for it
// if it is still starting. *concord.App implements it; FromNode adapts a
// node that is already open.
type Backend interface {
	// Node returns the ready coordination node, or an error if it cannot
	// be had before ctx ends.
	Node(ctx context.Context) (*coord.Node, error)
}

// FromNode returns a Backend for an open node.
func FromNode(n *coord.Node) Backend { return nodeBackend{n} }

type nodeBackend struct{ n *coord.Node }

func (b nodeBackend) Node(ctx context.Context) (*coord.Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return b.n, nil
}

// nameRE is the set of names that are valid JetStream KV keys (no empty
// subject tokens, no wildcards).
var nameRE = regexp.MustCompile(`^[-/_=A-Za-z0-9]+(\.[-/_=A-Za-z0-9]+)*$`)

func validName(name string) bool {
	return len(name) <= MaxNameLen && nameRE.MatchString(name)
}

// CheckName returns nil for a valid lock or election name, and otherwise
// ErrInvalidName: a name is 1 to MaxNameLen bytes of letters, digits and
// "-/_=", in non-empty tokens separated by single dots. NewMutex and
// NewElection apply the same check; use CheckName to refuse a name from
// outside (a request, a command line) before making one.
func CheckName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %d bytes, want at most %d", ErrInvalidName, len(name), MaxNameLen)
	}
	if !validName(name) {
		return fmt.Errorf("%w: %q (want 1 to %d bytes of letters, digits and -/_= in dot-separated tokens)", ErrInvalidName, name, MaxNameLen)
	}
	return nil
}
