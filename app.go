package concord

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/nats-io/nats.go"

	"github.com/concordrpc/concord/console"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/coord/registry"
	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/tcc"
)

// readinessGate is the rpc readiness gate the App holds until the
// coordination node is ready.
const readinessGate = "coordination"

// stoppingGate is the readiness gate closed when the App starts to stop.
const stoppingGate = "lifecycle"

// StatusPath is where an App's admin listener (WithAdminAddr) serves its
// status as JSON (Status: coordination, locks, limits, breakers), for
// `concord status` and the console. The RPC port does not serve it.
const StatusPath = "/concord/status"

// ErrNotReady is returned (wrapped with the cause) by Node, Local and what
// waits on them when the App cannot have them: coordination failed to start
// for a reason retrying does not fix (a bad configuration, a data
// directory in use, rejected credentials), or the App stopped.
var ErrNotReady = errors.New("concord: coordination not available")

// errStarting is the status while the first node opens.
var errStarting = errors.New("concord: coordination starting")

// errStopped is ErrNotReady's cause once Run has returned.
var errStopped = errors.New("the App stopped")

// App is one Concord service process: an RPC server and its coordination
// node, with one lifecycle. Register services, then call Run.
//
// Run serves RPCs at once, while the coordination node starts beside them;
// /readyz and gRPC health report not ready, with the reason, while
// coordination is unavailable: at start, when the connection to the node
// is lost (until it reconnects) or closed (until a new one is open and the
// App registered again). Calls that do not need coordination are served
// all along; what needs it waits for it until the call's deadline.
//
// At the end of Run's context (and on SIGTERM or SIGINT with
// WithSignalHandling) the App stops in order: readiness off; every lock and
// leadership held through the App given back; its instances leave the
// registry; it keeps serving for the drain delay (WithDrainDelay) so that
// clients stop choosing it; calls in flight drain (see rpc.Server); the
// local store and the node close.
type App struct {
	cfg    appConfig
	server *rpc.Server

	services []string // discovery names of the registered services
	policies []*rpc.ServicePolicy
	conn     *rpc.Conn
	resolver *appResolver
	guard    *appGuard
	tcc      *tcc.Coordinator
	barrier  *tcc.BadgerBarrier // WithTCCLocalBarrier's, or nil

	metrics *appMetrics // nil with WithoutMetrics
	tracing *appTracing // nil while tracing is off

	configTypes sync.Map // config name → protoreflect.MessageType, recorded by Config for the admin routes

	adminReady chan struct{} // closed when adminAddr is set (nil without one)
	adminAddr  net.Addr

	mu      sync.Mutex
	gen     *coordGen         // the open node and what is built on it; nil while unavailable
	local   *localstore.Store // set once open
	err     error             // why Node and Local fail for good (wraps ErrNotReady); nil while they may succeed
	down    error             // why coordination is unavailable now (wraps coord.ErrUnavailable), if it is known to be
	changed chan struct{}     // closed and replaced when gen, local or err change

	runOnce sync.Once
	fn      functionState // RunFunction's

	// Stop hooks (onStop): what was built on the App and ends with it.
	stopHooks []func() // guarded by mu
	stopped   bool     // guarded by mu: the hooks ran
}

// coordGen is one open coordination node and what the App built on it.
// A node whose connection closed for good is replaced by a new generation.
type coordGen struct {
	node       *coord.Node
	resolver   *registry.Resolver
	limits     *coord.LimitStore
	registrars []*registry.Registrar
}

// New returns an App. It does no I/O: the node starts in Run.
func New(opts ...Option) *App {
	cfg := defaultAppConfig()
	for _, o := range opts {
		o.apply(&cfg)
	}
	cfg.addr = cfg.listenAddr() // read PORT once, at New
	a := &App{cfg: cfg, adminReady: make(chan struct{}), changed: make(chan struct{})}
	a.fn.wanted, a.fn.born = make(chan struct{}), time.Now()
	a.guard = &appGuard{app: a}
	metricsServerOpts, metricsTCCOpts := a.setupMetrics() // before cfg's options, which may replace the hooks
	// Tracing too comes before cfg's options; nothing when it is off.
	tracingServerOpts, tracingClientOpts, tracingTCCOpts := a.setupTracing()
	serverOpts := append([]rpc.ServerOption{
		rpc.WithLogger(cfg.logger),
		rpc.WithAdmissionOptions(rpc.WithLimiterStore(&limiterStore{app: a}), rpc.WithInstanceCount(a.instanceCount)),
		rpc.WithReadinessGates(readinessGate),
		rpc.WithFencingGuard(a.guard),
	}, slices.Concat(tracingServerOpts, metricsServerOpts, cfg.serverOpts)...)
	if len(cfg.tccLocal) > 0 {
		a.barrier = tcc.NewBadgerBarrierFrom(a, append([]tcc.Option{tcc.WithLogger(cfg.logger)}, cfg.tccBarrier...)...)
		serverOpts = append([]rpc.ServerOption{rpc.WithTCCParticipant(tcc.NewInterceptor(a.barrier, cfg.tccLocal...))}, serverOpts...)
	}
	a.server = rpc.NewServer(serverOpts...)
	a.server.SetNotReady(readinessGate, "coordination starting")
	a.resolver = &appResolver{app: a}
	a.conn = rpc.NewResolvingConn(a.resolver, slices.Concat([]rpc.ClientOption{rpc.WithZone(cfg.zone)}, tracingClientOpts, a.metricsClientOptions(), cfg.clientOpts)...)
	host, _ := os.Hostname()
	a.tcc = tcc.NewCoordinator(a, a, a.resolver, append([]tcc.CoordinatorOption{
		tcc.WithCoordinatorLogger(cfg.logger), tcc.WithName(fmt.Sprintf("%s/%d", cmp.Or(host, "app"), os.Getpid())),
	}, slices.Concat(tracingTCCOpts, metricsTCCOpts, cfg.tccOpts)...)...)
	return a
}

// TCC runs a TCC transaction coordinated by this App: fn adds the
// branches (tx.Try with a generated <Service><Try>Branch), and TCC logs
// them in the cluster's transaction log, runs the Trys, decides, and
// confirms or cancels every branch. It returns nil when the transaction
// committed (its Confirms finish in the background and in recovery if
// they take longer than ctx), and otherwise a *connect.Error whose cause
// is tcc.ErrCancelled or tcc.ErrUnknown, which a handler can return as
// it is. See tcc.Coordinator.Run for the guarantees and opts.
func (a *App) TCC(ctx context.Context, fn func(tx *tcc.Tx) error, opts ...tcc.TxOption) (tcc.Result, error) {
	return a.tcc.Run(ctx, fn, opts...)
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

// current returns the App's state and a channel closed at its next change.
func (a *App) current() (*coordGen, *localstore.Store, error, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gen, a.local, a.err, a.changed
}

// update changes the App's state under its lock and wakes every waiter.
func (a *App) update(f func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f()
	close(a.changed)
	a.changed = make(chan struct{})
}

// currentGen waits until a coordination node is open and returns its
// generation, or returns the App's error (wrapping ErrNotReady), at once
// why coordination is known to be unavailable (wrapping
// coord.ErrUnavailable), or ctx's error.
func (a *App) currentGen(ctx context.Context) (*coordGen, error) {
	a.fn.want() // function mode opens coordination on first use
	for {
		a.mu.Lock()
		g, err, down, changed := a.gen, a.err, a.down, a.changed
		a.mu.Unlock()
		switch {
		case err != nil:
			return nil, err
		case down != nil:
			return nil, down
		case g != nil:
			return g, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Node returns the open coordination node, waiting for it while it starts.
// It fails at once with an error wrapping coord.ErrUnavailable while
// coordination is known to be unavailable (it could not be reached, its
// connection is lost and reconnecting, or it closed for good and a new one
// is not open yet), and with
// ErrNotReady (wrapped with the cause) if coordination failed to start for
// a reason retrying does not fix or the App stopped; else with ctx's
// error. A node whose connection closed for good is replaced: call Node
// again rather than keeping the result. Locks, elections, cluster-scoped
// limits and discovery through the App get their node here, so they too
// fail fast during an outage. In function mode (RunFunction) the first
// call opens the connection.
func (a *App) Node(ctx context.Context) (*coord.Node, error) {
	g, err := a.currentGen(ctx)
	if err != nil {
		return nil, err
	}
	return g.node, nil
}

// Local waits until the App's local durable store (Badger, under
// <data dir>/local) is open and returns it. It does not need coordination.
// Errors: ErrNotReady (wrapped with the cause) if it cannot be opened or
// the App stopped, or ctx's error. An App in function mode (RunFunction)
// has no local store: Local fails at once with ErrNotReady.
func (a *App) Local(ctx context.Context) (*localstore.Store, error) {
	if a.fn.on.Load() {
		return nil, errNoLocalInFunction
	}
	for {
		_, local, err, changed := a.current()
		switch {
		case err != nil:
			return nil, err
		case local != nil:
			return local, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Run serves until ctx ends (or the process gets SIGTERM or SIGINT, with
// WithSignalHandling), then stops in order (see App) and returns nil after
// a clean shutdown. It returns early with an error wrapping ErrNotReady if
// coordination cannot start for a reason retrying does not fix, or with
// the server's error. Coordination that is merely unreachable is retried
// without limit while RPCs are served. Run may be called once.
func (a *App) Run(ctx context.Context) error {
	err := errors.New("concord: Run called twice")
	a.runOnce.Do(func() { err = a.run(ctx) })
	return err
}

func (a *App) run(ctx context.Context) error {
	if a.cfg.signals {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
		defer stop()
	}
	defer a.update(func() { a.gen, a.local, a.err = nil, nil, fmt.Errorf("%w: %w", ErrNotReady, errStopped) })
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

	coordCtx, stopCoord := context.WithCancel(ctx)
	defer stopCoord()
	coordinated := make(chan error, 1)
	go func() { coordinated <- a.coordinate(coordCtx, ln.Addr()) }()
	recovered := make(chan struct{})
	go func() {
		defer close(recovered)
		var wg sync.WaitGroup
		if a.barrier != nil {
			wg.Go(func() {
				if _, err := a.Local(coordCtx); err == nil {
					tcc.RunCleanup(coordCtx, a.barrier, 0, a.cfg.logger)
				}
			})
		}
		if !a.cfg.noRecovery {
			_ = a.tcc.RunRecovery(coordCtx)
		}
		wg.Wait()
	}()

	var runErr error
	select {
	case err := <-coordinated:
		coordinated <- err
		if err != nil {
			a.cfg.logger.Error("concord: coordination failed to start", slog.Any("error", err))
			runErr = err
		}
	case err := <-served:
		served <- err // the server failed: shut down and report it
	case <-ctx.Done():
	}
	// Readiness goes first: load balancers stop sending while the rest
	// of the shutdown runs.
	a.server.SetNotReady(stoppingGate, "shutting down")
	stopCoord()
	<-recovered
	<-coordinated
	a.stop()
	stopServing()
	err = <-served
	_ = a.tcc.Close() // phases left running stay in the log for recovery
	a.runStopHooks()
	if cerr := a.closeState(); runErr == nil {
		runErr = errors.Join(err, cerr)
	}
	return runErr
}

// stop runs the first steps of the shutdown: readiness off, leases given
// back, instances deregistered, and the drain delay if there were any.
func (a *App) stop() {
	a.server.SetNotReady(readinessGate, "shutting down")
	g, _, _, _ := a.current()
	if g == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	g.node.Release(ctx)
	cancel()
	if a.deregister(g) && a.cfg.drainDelay > 0 {
		a.cfg.logger.Info("concord: deregistered; serving on for the drain delay", slog.Duration("delay", a.cfg.drainDelay))
		time.Sleep(a.cfg.drainDelay)
	}
}

// onStop registers f to run when Run ends, before the local store and the
// node close (config handles persist their last value then). After Run
// has ended, f runs at once.
func (a *App) onStop(f func()) {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		f()
		return
	}
	a.stopHooks = append(a.stopHooks, f)
	a.mu.Unlock()
}

// runStopHooks runs the onStop functions, concurrently, and waits for them.
func (a *App) runStopHooks() {
	a.mu.Lock()
	hooks := a.stopHooks
	a.stopHooks, a.stopped = nil, true
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, f := range hooks {
		wg.Go(f)
	}
	wg.Wait()
}

// closeState closes the App's client, the local store and the node.
func (a *App) closeState() error {
	err := a.conn.Close()
	g, local, _, _ := a.current()
	if local != nil {
		err = errors.Join(err, local.Close())
	}
	if g != nil {
		err = errors.Join(err, g.close())
	}
	return err
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
	a.mountConfigAdmin(mux)
	a.mountLockAdmin(mux)
	a.mountDeadLetterAdmin(mux)
	logAttrs := []any{slog.String("admin", ln.Addr().String()), slog.String("status", StatusPath)}
	if !a.cfg.noConsole {
		mux.Handle("GET "+console.Path, console.Handler(console.WithStatusPath(StatusPath)))
		logAttrs = append(logAttrs, slog.String("console", "http://"+ln.Addr().String()+console.Path))
	}
	if h := a.metricsHandler(); h != nil {
		mux.Handle("GET "+MetricsPath, h)
		logAttrs = append(logAttrs, slog.String("metrics", "http://"+ln.Addr().String()+MetricsPath))
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(ln)
	}()
	a.adminAddr = ln.Addr()
	close(a.adminReady)
	a.cfg.logger.Info("concord: admin listening", logAttrs...)
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

// slowStart is how long opening coordination takes before readiness says
// why it is still starting.
const slowStart = 3 * time.Second

// Backoff between attempts to open coordination.
const (
	minRetry = 100 * time.Millisecond
	maxRetry = 10 * time.Second
)

// coordinate opens the local store and the coordination node, registers
// the App's services and keeps them so until ctx ends: an unreachable
// node is retried with backoff, and a node whose connection closed for
// good is replaced by a new one. It leaves the current generation open for
// the shutdown. It returns an error wrapping ErrNotReady only for a
// failure that retrying does not fix.
func (a *App) coordinate(ctx context.Context, addr net.Addr) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	localErr := make(chan error, 1)
	go func() {
		err := a.openLocal()
		if err != nil {
			cancel()
		}
		localErr <- err
	}()
	err := a.keepNode(ctx, addr)
	return errors.Join(<-localErr, err)
}

// keepNode is coordinate's loop over node generations.
func (a *App) keepNode(ctx context.Context, addr net.Addr) error {
	retry := minRetry
	for attempt := 1; ; attempt++ {
		// A node waits for its cluster's quorum without limit: say so in
		// readiness once it takes longer than a start should.
		slow := time.AfterFunc(slowStart, func() {
			a.update(func() {
				if a.gen == nil {
					a.server.SetNotReady(readinessGate, "coordination starting: the node is not ready yet (a cluster node waits for a quorum of its peers)")
				}
			})
		})
		g, err := a.openGen(ctx, addr)
		slow.Stop()
		if err == nil {
			retry, attempt = minRetry, 0
			a.update(func() { a.gen, a.down = g, nil })
			a.watchConn(ctx, g)
			if ctx.Err() != nil {
				return nil
			}
			a.cfg.logger.Warn("concord: connection to the coordination node closed for good; opening a new one")
			a.server.SetNotReady(readinessGate, "coordination connection closed; reopening")
			a.update(func() {
				a.gen = nil
				a.down = fmt.Errorf("%w: connection to the node closed; reopening", coord.ErrUnavailable)
			})
			_ = g.close()
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, coord.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", ErrNotReady, err)
			a.update(func() { a.err = err })
			return err
		}
		a.update(func() { a.down = err })
		a.server.SetNotReady(readinessGate, "coordination unavailable: "+err.Error())
		a.cfg.logger.Warn("concord: coordination unavailable; retrying", slog.Int("attempt", attempt),
			slog.Duration("in", retry), slog.Any("error", err))
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		retry = min(2*retry, maxRetry)
	}
}

// openLocal opens the local store and publishes it. A store that cannot
// be opened is a failure that retrying does not fix.
func (a *App) openLocal() error {
	local, err := localstore.Open(filepath.Join(a.cfg.dataDir, "local"), localstore.WithLogger(a.cfg.logger))
	if errors.Is(err, localstore.ErrDirInUse) {
		// Another process runs on the data directory: the same error as
		// the node's directory lock gives (which client mode has not).
		err = fmt.Errorf("%w: %w", coord.ErrDataDirInUse, err)
	}
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrNotReady, err)
		a.update(func() { a.err = err })
		return err
	}
	a.update(func() { a.local = local })
	return nil
}

// openGen opens a coordination node and registers the App's services on
// it. In embedded and cluster mode it waits, without limit, for the node
// to be ready; a client-mode node that no server answers fails at once
// with coord.ErrUnavailable.
func (a *App) openGen(ctx context.Context, addr net.Addr) (*coordGen, error) {
	octx, cancel := context.WithDeadline(ctx, time.Now().Add(100*365*24*time.Hour))
	defer cancel()
	node, err := coord.Open(octx, append([]coord.Option{
		coord.WithDataDir(a.cfg.dataDir), coord.WithLogger(a.cfg.logger),
	}, a.cfg.coordOpts...)...)
	if err != nil {
		return nil, err
	}
	g := &coordGen{node: node, resolver: registry.NewResolver(node, registry.ResolverLogger(a.cfg.logger))}
	if g.limits, err = node.LimitStore(ctx); err == nil && addr != nil {
		err = a.register(ctx, g, addr) // nil in function mode: no registration
	}
	if err != nil {
		_ = g.close()
		if !errors.Is(err, registry.ErrInvalidRegistration) {
			err = fmt.Errorf("%w: %w", coord.ErrUnavailable, err)
		}
		return nil, err
	}
	return g, nil
}

// watchConn keeps readiness in step with g's connection until ctx ends or
// the connection closes for good.
func (a *App) watchConn(ctx context.Context, g *coordGen) {
	nc := g.node.Conn()
	events := nc.StatusChanged()
	defer nc.RemoveStatusListener(events)
	tick := time.NewTicker(time.Second) // events can be dropped; the state cannot
	defer tick.Stop()
	last := nats.Status(-1)
	for {
		st := nc.Status()
		switch {
		case st == nats.CLOSED:
			return
		case st == last:
		case st == nats.CONNECTED:
			if last != -1 {
				a.cfg.logger.Info("concord: reconnected to the coordination node")
				a.update(func() { a.down = nil })
			}
			a.server.SetReady(readinessGate)
		default:
			a.cfg.logger.Warn("concord: connection to the coordination node lost; reconnecting", slog.String("state", st.String()))
			a.server.SetNotReady(readinessGate, "coordination connection lost; reconnecting")
			// What needs the node fails fast meanwhile; sessions and
			// watches already made keep it and resume after.
			a.update(func() {
				a.down = fmt.Errorf("%w: connection to the node lost (%s); reconnecting", coord.ErrUnavailable, strings.ToLower(st.String()))
			})
		}
		last = st // not a second read: a change between the two would never be acted on
		select {
		case <-ctx.Done():
			return
		case <-events:
		case <-tick.C:
		}
	}
}

// close closes what g built and its node.
func (g *coordGen) close() error {
	for _, r := range g.registrars {
		_ = r.Close()
	}
	return errors.Join(g.resolver.Close(), g.node.Close())
}

// register puts every registered service in the registry, at the address
// the App serves on (or WithAdvertiseURL).
func (a *App) register(ctx context.Context, g *coordGen, addr net.Addr) error {
	base := a.cfg.advertise
	if base == "" {
		hp := advertiseHostPort(addr)
		if host, _, _ := net.SplitHostPort(hp); isLoopback(host) && !g.node.LoopbackOnly() {
			return fmt.Errorf("%w: the App listens on %s, which instances on other hosts cannot dial, and its coordination"+
				" reaches beyond this host: listen on a routable address (WithAddr) or set WithAdvertiseURL",
				registry.ErrInvalidRegistration, addr)
		}
		base = "http://" + hp
	}
	id, err := a.instanceID(ctx)
	if err != nil {
		return err
	}
	regs := make([]*registry.Registrar, len(a.services))
	errs := make([]error, len(a.services))
	var wg sync.WaitGroup
	for i, name := range a.services {
		wg.Go(func() {
			regs[i], errs[i] = registry.Register(ctx, g.node, registry.Registration{
				Service: name, ID: id, BaseURL: base, Zone: a.cfg.zone, Version: a.cfg.version, Ready: true,
			}, registry.WithLogger(a.cfg.logger))
			if errs[i] != nil {
				errs[i] = fmt.Errorf("register %s: %w", name, errs[i])
			}
		})
	}
	wg.Wait()
	for _, r := range regs {
		if r != nil {
			g.registrars = append(g.registrars, r)
		}
	}
	if err := errors.Join(errs...); err != nil {
		a.deregister(g)
		return err
	}
	return nil
}

// instanceIDKey is where the local store keeps the App's instance ID.
const instanceIDKey = "concord/app/instance-id"

// instanceID returns the App's instance ID, the same across restarts on
// one data directory: a TCC coordinator sends every phase of a branch to
// the instance that got its Try, whose barrier may be in its local store,
// so a restarted instance must be found under its old ID.
func (a *App) instanceID(ctx context.Context) (string, error) {
	local, err := a.Local(ctx)
	if err != nil {
		return "", err
	}
	id, err := local.Get([]byte(instanceIDKey))
	if err == nil {
		return string(id), nil
	}
	if !errors.Is(err, localstore.ErrNotFound) {
		return "", fmt.Errorf("concord: read the instance ID: %w", err)
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	fresh := hex.EncodeToString(b[:])
	if err := local.Set([]byte(instanceIDKey), []byte(fresh)); err != nil {
		return "", fmt.Errorf("concord: store the instance ID: %w", err)
	}
	return fresh, nil
}

// deregister removes g's instances from the registry, bounded in time,
// stops their heartbeats, and reports whether there were any.
func (a *App) deregister(g *coordGen) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	had := len(g.registrars) > 0
	for _, r := range g.registrars {
		if err := r.Deregister(ctx); err != nil {
			a.cfg.logger.Warn("concord: deregister", slog.Any("error", err))
		}
		_ = r.Close()
	}
	g.registrars = nil
	return had
}

// isLoopback reports whether host is "localhost" or a loopback IP.
func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
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

// appResolver resolves through the registry of the current node.
type appResolver struct{ app *App }

// While the connection is lost and reconnecting, the current node's
// resolver still answers from the instances it last saw.
func (r *appResolver) Resolve(ctx context.Context, service string) ([]rpc.Instance, error) {
	r.app.mu.Lock()
	g := r.app.gen
	r.app.mu.Unlock()
	if g == nil {
		var err error
		if g, err = r.app.currentGen(ctx); err != nil {
			return nil, err
		}
	}
	return g.resolver.Resolve(ctx, service)
}

// serveStatus serves the status of the current node, or at once why
// there is none (coordination starting, unavailable or stopped).
func (a *App) serveStatus(w http.ResponseWriter, r *http.Request) {
	g, err := a.statusGen()
	if err != nil {
		coord.WriteStatusError(w, err)
		return
	}
	a.writeAppStatus(w, r, g)
}

// statusGen returns the current generation for a status read (the status
// of a node that is reconnecting reports what it can), or at once why
// there is none: coordination starting, unavailable or stopped.
func (a *App) statusGen() (*coordGen, error) {
	a.mu.Lock()
	g, err, down := a.gen, a.err, a.down
	a.mu.Unlock()
	if g == nil {
		return nil, cmp.Or(err, down, errStarting)
	}
	return g, nil
}

// limiterStore is the App's rpc.LimiterStore: the current node's
// LimitStore.
type limiterStore struct{ app *App }

var _ rpc.LimiterStore = (*limiterStore)(nil)

func (s *limiterStore) Acquire(ctx context.Context, key string, want, rate int, per time.Duration, burst int) (int, time.Duration, error) {
	g, err := s.app.currentGen(ctx)
	if err != nil {
		return 0, 0, err
	}
	return g.limits.Acquire(ctx, key, want, rate, per, burst)
}

func (s *limiterStore) Release(ctx context.Context, key string, tokens, rate int, per time.Duration) error {
	g, err := s.app.currentGen(ctx)
	if err != nil {
		return err
	}
	return g.limits.Release(ctx, key, tokens, rate, per)
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
// default each grant has its own lease of lock.DefaultTTL and names this
// process (host/pid) as its holder in the status; opts can change that.
func (a *App) Mutex(name string, opts ...lock.Option) *lock.Mutex {
	return lock.NewMutex(a, name, slices.Concat(a.lockOptions(), a.tracingLockOptions(), opts)...)
}

// Election returns a candidate in the leader election named name on the
// App's coordination node (see package coord/lock). Like Mutex, it does no
// I/O and its methods wait for the node.
func (a *App) Election(name string, opts ...lock.Option) *lock.Election {
	return lock.NewElection(a, name, slices.Concat(a.lockOptions(), a.tracingLockOptions(), opts)...)
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
