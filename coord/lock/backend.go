package lock

import (
	"context"
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
