package concord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/rpc"
)

// readinessGate is the rpc readiness gate the App holds until the
// coordination node is ready.
const readinessGate = "coordination"

// StatusPath is where an App serves its coordination status as JSON, for
// `concord status`.
const StatusPath = "/concord/status"

// ErrNotReady is returned by Node when coordination failed to start or the
// App was stopped.
var ErrNotReady = errors.New("concord: coordination not available")

// App is one Concord service process: an RPC server and its coordination
// node, with one lifecycle. Register services, then call Run.
//
// Run serves RPCs at once, while the coordination node starts beside them;
// /readyz and gRPC health report not ready until the node is. Calls that do
// not need coordination are served from the first moment. On SIGTERM,
// SIGINT or the end of Run's context the App drains (see rpc.Server) and
// then closes the node.
type App struct {
	cfg    appConfig
	server *rpc.Server

	nodeReady chan struct{} // closed when node (and local) or nodeErr is set
	node      *coord.Node
	local     *localstore.Store
	nodeErr   error

	runOnce sync.Once
}

// New returns an App. It does no I/O: the node starts in Run.
func New(opts ...Option) *App {
	cfg := defaultAppConfig()
	for _, o := range opts {
		o.apply(&cfg)
	}
	a := &App{cfg: cfg, nodeReady: make(chan struct{})}
	serverOpts := append([]rpc.ServerOption{
		rpc.WithLogger(cfg.logger),
		rpc.WithAdmissionOptions(rpc.WithLimiterStore(&limiterStore{app: a})),
		rpc.WithReadinessGates(readinessGate),
		rpc.WithHandler("GET "+StatusPath, http.HandlerFunc(a.serveStatus)),
	}, cfg.serverOpts...)
	a.server = rpc.NewServer(serverOpts...)
	return a
}

// RegisterService implements rpc.ServiceRegistrar, so generated
// Register<Service> functions accept an App.
func (a *App) RegisterService(policy *rpc.ServicePolicy, register func(*connect.Server)) {
	a.server.RegisterService(policy, register)
}

// Server returns the App's RPC server.
func (a *App) Server() *rpc.Server { return a.server }

// Node waits until the coordination node is ready and returns it, or
// returns ErrNotReady (wrapped with the cause) if it failed to start or the
// App stopped, or ctx's error.
func (a *App) Node(ctx context.Context) (*coord.Node, error) {
	select {
	case <-a.nodeReady:
		if a.nodeErr != nil {
			return nil, a.nodeErr
		}
		return a.node, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Local waits until the App's local durable store (Badger, under
// <data dir>/local) is open and returns it; errors as for Node.
func (a *App) Local(ctx context.Context) (*localstore.Store, error) {
	if _, err := a.Node(ctx); err != nil {
		return nil, err
	}
	return a.local, nil
}

// Run serves until ctx ends or the process gets SIGTERM or SIGINT, then
// drains and closes everything. It returns nil after a clean shutdown, the
// coordination node's error if it could not start, or the server's error.
// Run may be called once.
func (a *App) Run(ctx context.Context) error {
	err := errors.New("concord: Run called twice")
	a.runOnce.Do(func() { err = a.run(ctx) })
	return err
}

func (a *App) run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", a.cfg.addr)
	if err != nil {
		return fmt.Errorf("concord: listen on %s: %w", a.cfg.addr, err)
	}
	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	served := make(chan error, 1)
	go func() { served <- a.server.Serve(serveCtx, ln) }()

	nodeCtx, cancelOpen := context.WithCancel(ctx)
	defer cancelOpen()
	go func() {
		if err := a.openState(nodeCtx); err != nil {
			a.nodeErr = fmt.Errorf("%w: %w", ErrNotReady, err)
		} else {
			a.server.SetReady(readinessGate)
		}
		close(a.nodeReady)
	}()

	var runErr error
	select {
	case <-a.nodeReady:
		if a.nodeErr != nil && ctx.Err() == nil {
			a.cfg.logger.Error("concord: coordination failed to start", slog.Any("error", a.nodeErr))
			runErr = a.nodeErr
			stopServing()
		}
	case err := <-served:
		// The server failed before shutdown began.
		cancelOpen()
		<-a.nodeReady
		return errors.Join(err, a.closeNode())
	case <-ctx.Done():
	}
	err = <-served // drains once ctx (or stopServing) ends
	cancelOpen()
	<-a.nodeReady
	if cerr := a.closeNode(); runErr == nil {
		runErr = errors.Join(err, cerr)
	}
	return runErr
}

// openState opens the coordination node, then the local store under the
// node's data directory (whose lock the node holds).
func (a *App) openState(ctx context.Context) error {
	node, err := coord.Open(ctx, append([]coord.Option{
		coord.WithDataDir(a.cfg.dataDir), coord.WithLogger(a.cfg.logger),
	}, a.cfg.coordOpts...)...)
	if err != nil {
		return err
	}
	local, err := localstore.Open(filepath.Join(a.cfg.dataDir, "local"), localstore.WithLogger(a.cfg.logger))
	if err != nil {
		return errors.Join(err, node.Close())
	}
	a.node, a.local = node, local
	return nil
}

func (a *App) closeNode() error {
	if a.node == nil {
		return nil
	}
	return errors.Join(a.local.Close(), a.node.Close())
}

func (a *App) serveStatus(w http.ResponseWriter, r *http.Request) {
	node, err := a.Node(r.Context())
	if err != nil {
		coord.WriteStatusError(w, err)
		return
	}
	node.ServeHTTP(w, r)
}

// limiterStore is the App's rpc.LimiterStore: the coordination node's
// LimitStore, once the node is ready.
type limiterStore struct {
	app *App

	mu    sync.Mutex
	store *coord.LimitStore
}

var _ rpc.LimiterStore = (*limiterStore)(nil)

func (s *limiterStore) get(ctx context.Context) (*coord.LimitStore, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		return s.store, nil
	}
	node, err := s.app.Node(ctx)
	if err != nil {
		return nil, err
	}
	if s.store, err = node.LimitStore(ctx); err != nil {
		return nil, err
	}
	return s.store, nil
}

func (s *limiterStore) Acquire(ctx context.Context, key string, want, rate int, per time.Duration, burst int) (int, time.Duration, error) {
	store, err := s.get(ctx)
	if err != nil {
		return 0, 0, err
	}
	return store.Acquire(ctx, key, want, rate, per, burst)
}

func (s *limiterStore) Release(ctx context.Context, key string, tokens, rate int, per time.Duration) error {
	store, err := s.get(ctx)
	if err != nil {
		return err
	}
	return store.Release(ctx, key, tokens, rate, per)
}
