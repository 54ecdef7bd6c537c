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
	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/coord/registry"
	"github.com/concordrpc/concord/rpc"
)

// readinessGate is the rpc readiness gate the App holds until the
// coordination node is ready.
const readinessGate = "coordination"

// StatusPath is where an App's admin listener (WithAdminAddr) serves its
// coordination status as JSON, for `concord status`. The RPC port does not
// serve it.
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

	services   []string // discovery names of the registered services
	policies   []*rpc.ServicePolicy
	conn       *rpc.Conn
	resolver   *appResolver
	registrars []*registry.Registrar
	guard      *appGuard

	adminReady chan struct{} // closed when adminAddr is set (nil without one)
	adminAddr  net.Addr

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
	a := &App{cfg: cfg, nodeReady: make(chan struct{}), adminReady: make(chan struct{})}
	a.guard = &appGuard{app: a}
	serverOpts := append([]rpc.ServerOption{
		rpc.WithLogger(cfg.logger),
		rpc.WithAdmissionOptions(rpc.WithLimiterStore(&limiterStore{app: a}), rpc.WithInstanceCount(a.instanceCount)),
		rpc.WithReadinessGates(readinessGate),
		rpc.WithFencingGuard(a.guard),
	}, cfg.serverOpts...)
	a.server = rpc.NewServer(serverOpts...)
	a.resolver = &appResolver{app: a}
	a.conn = rpc.NewResolvingConn(a.resolver, append([]rpc.ClientOption{rpc.WithZone(cfg.zone)}, cfg.clientOpts...)...)
	return a
}

// RegisterService implements rpc.ServiceRegistrar, so generated
// Register<Service> functions accept an App.
func (a *App) RegisterService(policy *rpc.ServicePolicy, register func(*connect.Server)) {
	a.services = append(a.services, policy.DiscoveryName)
	a.policies = append(a.policies, policy)
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
	if stopAdmin := a.serveAdmin(); stopAdmin != nil {
		defer stopAdmin()
	}
	// Serving stops after deregistration, not at once when ctx ends.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	served := make(chan error, 1)
	go func() { served <- a.server.Serve(serveCtx, ln) }()

	nodeCtx, cancelOpen := context.WithCancel(ctx)
	defer cancelOpen()
	go func() {
		err := a.openState(nodeCtx)
		if err == nil {
			err = a.register(nodeCtx, ln.Addr())
		}
		if err != nil {
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
			break
		}
		select {
		case <-ctx.Done():
		case err := <-served:
			served <- err // the server failed: shut down and report it
		}
	case err := <-served:
		served <- err
	case <-ctx.Done():
	}
	// Shutdown: leave the registry first, so that clients stop choosing this
	// instance, then drain.
	cancelOpen()
	<-a.nodeReady
	a.deregister()
	stopServing()
	err = <-served
	if cerr := a.closeNode(); runErr == nil {
		runErr = errors.Join(err, cerr)
	}
	return runErr
}

// serveAdmin starts the admin listener, if one is configured, and returns
// the function that stops it. A listener that cannot be opened is logged:
// the App serves RPCs without it.
func (a *App) serveAdmin() (stop func()) {
	if a.cfg.adminAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", a.cfg.adminAddr)
	if err != nil {
		a.cfg.logger.Error("concord: admin listener not started; status is unavailable", slog.String("admin", a.cfg.adminAddr), slog.Any("error", err))
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+StatusPath, a.serveStatus)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(ln)
	}()
	a.adminAddr = ln.Addr()
	close(a.adminReady)
	a.cfg.logger.Info("concord: admin listening", slog.String("admin", ln.Addr().String()), slog.String("status", StatusPath))
	return func() {
		_ = hs.Close()
		<-done
	}
}

// AdminAddr returns the address the admin listener serves on, waiting
// until it does or ctx ends (an App without one never does).
func (a *App) AdminAddr(ctx context.Context) (net.Addr, error) {
	select {
	case <-a.adminReady:
		return a.adminAddr, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// openState opens the coordination node, then the local store under the
// node's data directory (whose lock the node holds).
func (a *App) openState(ctx context.Context) error {
	// Badger opens while the node starts: both wait on fsyncs.
	type opened struct {
		local *localstore.Store
		err   error
	}
	localCh := make(chan opened, 1)
	go func() {
		local, err := localstore.Open(filepath.Join(a.cfg.dataDir, "local"), localstore.WithLogger(a.cfg.logger))
		localCh <- opened{local, err}
	}()
	node, err := coord.Open(ctx, append([]coord.Option{
		coord.WithDataDir(a.cfg.dataDir), coord.WithLogger(a.cfg.logger),
	}, a.cfg.coordOpts...)...)
	l := <-localCh
	switch {
	case err != nil: // the node's error (a held data directory, say) explains best
		if l.local != nil {
			_ = l.local.Close()
		}
		return err
	case l.err != nil:
		return errors.Join(l.err, node.Close())
	}
	a.node, a.local = node, l.local
	return nil
}

func (a *App) closeNode() error {
	err := errors.Join(a.conn.Close(), a.resolver.close())
	if a.node == nil {
		return err
	}
	return errors.Join(err, a.local.Close(), a.node.Close())
}

// register puts every registered service in the registry, at the address
// the App serves on (or WithAdvertiseURL).
func (a *App) register(ctx context.Context, addr net.Addr) error {
	base := a.cfg.advertise
	if base == "" {
		base = "http://" + advertiseHostPort(addr)
	}
	regs := make([]*registry.Registrar, len(a.services))
	errs := make([]error, len(a.services))
	var wg sync.WaitGroup
	for i, name := range a.services {
		wg.Go(func() {
			regs[i], errs[i] = registry.Register(ctx, a.node, registry.Registration{
				Service: name, BaseURL: base, Zone: a.cfg.zone, Version: a.cfg.version, Ready: true,
			}, registry.WithLogger(a.cfg.logger))
			if errs[i] != nil {
				errs[i] = fmt.Errorf("register %s: %w", name, errs[i])
			}
		})
	}
	wg.Wait()
	for _, r := range regs {
		if r != nil {
			a.registrars = append(a.registrars, r)
		}
	}
	if err := errors.Join(errs...); err != nil {
		a.deregister()
		return err
	}
	return nil
}

// deregister removes the App's instances from the registry, bounded in
// time, and stops their heartbeats.
func (a *App) deregister() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, r := range a.registrars {
		if err := r.Deregister(ctx); err != nil {
			a.cfg.logger.Warn("concord: deregister", slog.Any("error", err))
		}
		_ = r.Close()
	}
	a.registrars = nil
}

// advertiseHostPort turns a listen address into one that peers can dial:
// an unspecified IP becomes the host name.
func advertiseHostPort(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

// Client implements rpc.ClientConn, so that generated New<Service>Client
// functions accept an App: calls resolve the service by its discovery name
// through the registry and are balanced over its ready instances. A client
// may be made before any instance (or the node) is up; its calls wait for
// one until their deadline.
func (a *App) Client(policy *rpc.ServicePolicy) *connect.Client {
	return a.conn.Client(policy)
}

// appResolver resolves through the registry once the node is ready.
type appResolver struct {
	app *App

	mu sync.Mutex
	r  *registry.Resolver
}

func (r *appResolver) Resolve(ctx context.Context, service string) ([]rpc.Instance, error) {
	res, err := r.get(ctx)
	if err != nil {
		return nil, err
	}
	return res.Resolve(ctx, service)
}

func (r *appResolver) get(ctx context.Context) (*registry.Resolver, error) {
	r.mu.Lock()
	res := r.r
	r.mu.Unlock()
	if res != nil {
		return res, nil
	}
	node, err := r.app.Node(ctx)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil {
		r.r = registry.NewResolver(node, registry.ResolverLogger(r.app.cfg.logger))
	}
	return r.r, nil
}

func (r *appResolver) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil {
		return nil
	}
	return r.r.Close()
}

func (a *App) serveStatus(w http.ResponseWriter, r *http.Request) {
	node, err := a.Node(r.Context())
	if err != nil {
		coord.WriteStatusError(w, err)
		return
	}
	res, err := a.resolver.get(r.Context())
	if err != nil {
		coord.WriteStatusError(w, err)
		return
	}
	registry.StatusHandler(node, res).ServeHTTP(w, r)
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

// Guard returns the App's fencing guard, waiting for the local store and
// the node as Local does: a lock.Guard over the App's Badger store that
// verifies new tokens against the node's locks. Fenced methods
// ((concord.v1.method).fencing) are checked with it before their handler
// runs; a handler passes rpc.FencingToken to Guard.Update to make its own
// local writes conditional on the token.
func (a *App) Guard(ctx context.Context) (*lock.Guard, error) {
	return a.guard.get(ctx)
}

// appGuard is the App's rpc.FencingGuard: its lock.Guard, once the local
// store and the node are open.
type appGuard struct {
	app *App

	mu    sync.Mutex
	guard *lock.Guard
}

func (g *appGuard) get(ctx context.Context) (*lock.Guard, error) {
	g.mu.Lock()
	guard := g.guard
	g.mu.Unlock()
	if guard != nil {
		return guard, nil
	}
	local, err := g.app.Local(ctx)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.guard == nil {
		g.guard = lock.NewGuard(local, g.app)
	}
	return g.guard, nil
}

// Admit implements rpc.FencingGuard.
func (g *appGuard) Admit(ctx context.Context, resource string, token uint64) (bool, error) {
	guard, err := g.get(ctx)
	if err != nil {
		return false, err
	}
	return guard.Admit(ctx, resource, token)
}

// Mutex returns a distributed lock named name on the App's coordination
// node, with a fencing token per grant (see package coord/lock). It does no
// I/O: its methods wait for the node (Node) until their context ends. By
// default each grant has its own lease of lock.DefaultTTL; opts can change
// that.
func (a *App) Mutex(name string, opts ...lock.Option) *lock.Mutex {
	return lock.NewMutex(a, name, opts...)
}

// Election returns a candidate in the leader election named name on the
// App's coordination node (see package coord/lock). Like Mutex, it does no
// I/O and its methods wait for the node.
func (a *App) Election(name string, opts ...lock.Option) *lock.Election {
	return lock.NewElection(a, name, opts...)
}

// instanceCount returns how many ready instances serve procedure's service,
// as the registry shows them (at least 1), for sizing cluster-limit
// batches. It never waits.
func (a *App) instanceCount(procedure string) int {
	name := ""
	for _, p := range a.policies {
		if p.Method(procedure) != nil {
			name = p.DiscoveryName
			break
		}
	}
	if name == "" {
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	insts, err := a.resolver.Resolve(ctx, name)
	if err != nil {
		return 1
	}
	return max(len(insts), 1)
}
