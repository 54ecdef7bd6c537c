package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/lock"
)

const ttl = 10 * time.Second

type concordBackend struct{ node *coord.Node }

func startConcord(relaxed bool) func(dir string) (backend, error) {
	return func(dir string) (backend, error) {
		opts := []coord.Option{coord.WithDataDir(dir), coord.WithLogger(slog.New(slog.DiscardHandler))}
		if relaxed {
			opts = append(opts, coord.WithSyncInterval(time.Second))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n, err := coord.Open(ctx, opts...)
		if err != nil {
			return nil, err
		}
		return &concordBackend{node: n}, nil
	}
}

func (b *concordBackend) contender(ctx context.Context) (locker, error) {
	s, err := lock.NewSession(ctx, lock.FromNode(b.node), lock.WithTTL(ttl))
	if err != nil {
		return nil, err
	}
	return &concordLocker{s: s, m: lock.NewMutex(lock.FromNode(b.node), "bench", lock.WithSession(s))}, nil
}

func (b *concordBackend) close() error { return b.node.Close() }

type concordLocker struct {
	s *lock.Session
	m *lock.Mutex
}

func (l *concordLocker) lock(ctx context.Context) error {
	_, err := l.m.Lock(ctx)
	return err
}

func (l *concordLocker) unlock(ctx context.Context) error { return l.m.Unlock(ctx) }

func (l *concordLocker) close() error { return l.s.Close() }
