package outboxes

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/concordrpc/concord/coord"
)

// Entry is one registered outbox.
type Entry struct {
	// Store is the kind of store: "badger", "sqlite" or "postgres".
	Store string
	// Stats counts the outbox's waiting rows and returns the write time
	// of the oldest (zero when none wait).
	Stats func(ctx context.Context) (rows int, oldest time.Time, err error)
}

type set struct {
	mu      sync.Mutex
	seq     uint64
	entries map[uint64]Entry
}

type sharedKey struct{}

func of(node *coord.Node) *set {
	return node.Shared(sharedKey{}, func() any { return &set{entries: map[uint64]Entry{}} }).(*set)
}

// Register adds e to node's outboxes until remove is called.
func Register(node *coord.Node, e Entry) (remove func()) {
	s := of(node)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	id := s.seq
	s.entries[id] = e
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.entries, id)
	}
}

// List returns node's outboxes in the order they were registered.
func List(node *coord.Node) []Entry {
	s := of(node)
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]uint64, 0, len(s.entries))
	for id := range s.entries {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]Entry, len(ids))
	for i, id := range ids {
		out[i] = s.entries[id]
	}
	return out
}
