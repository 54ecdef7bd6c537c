package config

import (
	"context"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/coord/lock"
)

// Backend gives a Handle its coordination node, waiting for it if it is
// still starting: the same interface as locks use (lock.Backend). A node
// may be replaced: the Handle asks again after its watch ends.
// *concord.App implements it; FromNode adapts an open node.
type Backend = lock.Backend

// FromNode returns a Backend for an open node.
func FromNode(n *coord.Node) Backend { return lock.FromNode(n) }

// Local gives a Handle the local store where it keeps the last known
// value, waiting for it if it is still opening. *concord.App implements
// it; FromStore adapts an open store.
type Local = localstore.Source

// FromStore returns a Local for an open store.
func FromStore(s *localstore.Store) Local { return storeLocal{s} }

type storeLocal struct{ s *localstore.Store }

func (l storeLocal) Local(ctx context.Context) (*localstore.Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return l.s, nil
}
