package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/lock"
)

const ttl = 10 * time.Second

// The loopback listener's credentials, for contenders on connections of
// their own.
const benchUser, benchPassword = "lockbench", "lockbench-secret"

type concordBackend struct {
	node *coord.Node
	// ownConns gives each contender a connection of its own (a client-mode
	// node on the loopback listener), as separate processes would have.
	ownConns bool
}

func startConcord(relaxed, ownConns bool) func(dir string) (backend, error) {
	return func(dir string) (backend, error) {
		opts := []coord.Option{coord.WithDataDir(dir), coord.WithLogger(slog.New(slog.DiscardHandler))}
		if relaxed {
			opts = append(opts, coord.WithSyncInterval(time.Second))
		}
		if ownConns {
			opts = append(opts, coord.WithListen("127.0.0.1:-1"), coord.WithListenAuth(benchUser, benchPassword))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n, err := coord.Open(ctx, opts...)
		if err != nil {
			return nil, err
		}
		return &concordBackend{node: n, ownConns: ownConns}, nil
	}
}

func (b *concordBackend) contender(ctx context.Context) (locker, error) {
	node, conn := b.node, (*coord.Node)(nil)
	if b.ownConns {
		var err error
		conn, err = coord.Open(ctx, coord.WithClient([]string{b.node.ClientURL()}, coord.ClientAuth{Username: benchUser, Password: benchPassword}),
			coord.WithName("lockbench-contender"), coord.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			return nil, err
		}
		node = conn
	}
	s, err := lock.NewSession(ctx, lock.FromNode(node), lock.WithTTL(ttl))
	if err != nil {
		if conn != nil {
			_ = conn.Close()
		}
		return nil, err
	}
	return &concordLocker{s: s, m: lock.NewMutex(lock.FromNode(node), "bench", lock.WithSession(s)), conn: conn}, nil
}

func (b *concordBackend) close() error { return b.node.Close() }

type concordLocker struct {
	s    *lock.Session
	m    *lock.Mutex
	conn *coord.Node // the contender's own connection, or nil
}

func (l *concordLocker) lock(ctx context.Context) error {
	_, err := l.m.Lock(ctx)
	return err
}

func (l *concordLocker) unlock(ctx context.Context) error { return l.m.Unlock(ctx) }

func (l *concordLocker) close() error {
	err := l.s.Close()
	if l.conn != nil {
		err = errors.Join(err, l.conn.Close())
	}
	return err
}
