package coord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// inprocUser is the user the process's own connection logs in as.
const inprocUser = "concord-inprocess"

// randomSecret returns 32 random bytes, hex-encoded.
func randomSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// ErrClosed is returned by operations on a closed Node.
var ErrClosed = errors.New("coord: node closed")

// ErrUnavailable is wrapped by Open's error when the backend could not be
// reached or did not become ready in time (no server answered, a cluster
// without enough peers yet): opening again later may succeed. Open's other
// errors (a bad configuration, a data directory in use, rejected
// credentials) are not fixed by retrying.
var ErrUnavailable = errors.New("coord: coordination unavailable")

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Node is a process's handle on the coordination backend: an embedded
// JetStream node (alone or in a cluster) or a connection to an external NATS
// cluster. Open returns once the backend is ready: JetStream has a meta
// leader and Concord's buckets and streams exist. A Node is safe for
// concurrent use.
type Node struct {
	cfg      config
	lock     *dirLock
	srv      *server.Server // nil in client mode
	log      *natsLogger
	nc       *nats.Conn
	js       jetstream.JetStream
	replicas int

	// inprocPassword is the password of the process's own connection to
	// its embedded node (user inprocUser), made at Open; "" when the node
	// has no listener (nobody else can connect) or accepts anyone.
	inprocPassword string

	closeOnce sync.Once
	closeErr  error

	releaseMu  sync.Mutex
	releasers  map[uint64]func()
	releaseSeq uint64

	sharedMu sync.Mutex
	shared   map[any]any
}

// Open starts or connects to the coordination backend and waits until it is
// ready, or until ctx is done (DefaultReadyTimeout if ctx has no deadline).
// It fails fast, with an error that says why, on a bad configuration, a
// data directory held by another process (ErrDataDirInUse), a port in use,
// an unusable directory or rejected credentials.
func Open(ctx context.Context, opts ...Option) (*Node, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o.apply(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.warnInsecure()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.readyTimeout)
		defer cancel()
	}
	n := &Node{cfg: cfg, log: &natsLogger{logger: cfg.logger, level: cfg.logLevel}}
	if err := n.open(ctx); err != nil {
		_ = n.Close()
		return nil, err
	}
	return n, nil
}

func (c *config) validate() error {
	switch c.mode {
	case ModeClient:
		if len(c.urls) == 0 {
			return errors.New("coord: client mode needs at least one server URL")
		}
		return nil
	case ModeCluster:
		if c.cluster.Listen == "" {
			return errors.New("coord: cluster mode needs Cluster.Listen, this node's route address")
		}
		if !c.cluster.routeAuth() && !c.cluster.InsecureOpenRoutes {
			return errors.New("coord: cluster routes need credentials, or any server that reaches " + c.cluster.Listen +
				" could join and rewrite every bucket: set Cluster.Password, the same on every node" +
				" (concord node and the greeter read CONCORD_ROUTE_PASSWORD), or mutual TLS (Cluster.TLS with" +
				" ClientAuth tls.RequireAndVerifyClientCert); Cluster.InsecureOpenRoutes accepts any peer")
		}
		if _, _, err := splitHostPort(c.cluster.Listen); err != nil {
			return fmt.Errorf("coord: Cluster.Listen: %w", err)
		}
		for _, p := range c.cluster.Peers {
			if _, _, err := splitHostPort(p); err != nil {
				return fmt.Errorf("coord: Cluster.Peers: %w", err)
			}
		}
	}
	if !nameRE.MatchString(c.name) {
		return fmt.Errorf("coord: node name %q: use 1 to 64 letters, digits, '-' or '_'", c.name)
	}
	if c.dataDir == "" {
		return errors.New("coord: empty data directory")
	}
	if c.listen != "" {
		if _, _, err := splitHostPort(c.listen); err != nil {
			return fmt.Errorf("coord: listen address: %w", err)
		}
		if c.listenPassword == "" && !c.listenNoAuth {
			return fmt.Errorf("coord: the NATS listener on %s needs client credentials: WithListenAuth(user, password)"+
				" (concord node reads CONCORD_NATS_USER and CONCORD_NATS_PASSWORD); WithInsecureListenNoAuth accepts anyone", c.listen)
		}
	}
	return nil
}

// warnInsecure logs, at every Open, each opt-out of authentication in
// use, so that one left on by mistake shows in the logs.
func (c *config) warnInsecure() {
	if c.mode == ModeCluster && !c.cluster.routeAuth() && c.cluster.InsecureOpenRoutes {
		c.logger.Warn("coord: INSECURE: cluster routes accept any peer (Cluster.InsecureOpenRoutes); any server that reaches the route address can join and rewrite every bucket",
			"route", c.cluster.Listen)
	}
	if c.listen != "" && c.listenPassword == "" && c.listenNoAuth {
		c.logger.Warn("coord: INSECURE: the NATS listener accepts clients without credentials (WithInsecureListenNoAuth); anyone who reaches it can read, write and delete every bucket",
			"listen", c.listen)
	}
}

func splitHostPort(hp string) (string, int, error) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < -1 || p > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", hp)
	}
	return host, p, nil
}

func (n *Node) open(ctx context.Context) error {
	if n.cfg.mode != ModeClient {
		lock, err := lockDir(n.cfg.dataDir)
		if err != nil {
			return err
		}
		n.lock = lock
		if err := n.startServer(ctx); err != nil {
			return err
		}
	}
	if err := n.connect(); err != nil {
		return err
	}
	js, err := jetstream.New(n.nc)
	if err != nil {
		return fmt.Errorf("coord: jetstream: %w", err)
	}
	n.js = js
	n.replicas = n.replicaCount()
	if n.cfg.mode == ModeClient {
		n.reportDurability()
	}
	return n.waitReady(ctx)
}

// reportDurability logs, once per node, whether the external servers
// fsync every JetStream write, as far as they say: their configuration is
// readable only with system-account credentials.
func (n *Node) reportDurability() {
	reply, err := n.nc.Request("$SYS.REQ.SERVER.PING.VARZ", nil, 500*time.Millisecond)
	var data []byte
	if err == nil {
		data = reply.Data
	}
	level, msg := durability(data)
	n.cfg.logger.Log(context.Background(), level, msg)
}

// durability returns the level and message that report the sync setting
// in a VARZ reply (nil when there was none).
func durability(varz []byte) (slog.Level, string) {
	var r struct {
		Data struct {
			JetStream struct {
				Config *struct {
					SyncInterval time.Duration `json:"sync_interval"`
					SyncAlways   bool          `json:"sync_always"`
				} `json:"config"`
			} `json:"jetstream"`
		} `json:"data"`
	}
	const advice = "; an acknowledged write can be lost if a majority of the servers lose power at once." +
		" For an fsync on every write, set `jetstream { sync_interval: always }` on every server"
	if varz == nil || json.Unmarshal(varz, &r) != nil || r.Data.JetStream.Config == nil {
		return slog.LevelWarn, "coord: client mode: cannot read the NATS servers' sync setting (it needs system-account" +
			" credentials), so Concord cannot tell whether they fsync writes; nats-server's default is every 2 minutes" + advice
	}
	c := r.Data.JetStream.Config
	if c.SyncAlways {
		return slog.LevelInfo, "coord: client mode: the NATS servers fsync every JetStream write"
	}
	every := "2m0s (nats-server's default)"
	if c.SyncInterval > 0 {
		every = c.SyncInterval.String()
	}
	return slog.LevelWarn, "coord: client mode: the NATS servers fsync JetStream writes every " + every + advice
}

func (n *Node) serverOptions() (*server.Options, error) {
	c := n.cfg
	o := &server.Options{
		ServerName:         c.name,
		JetStream:          true,
		StoreDir:           filepath.Join(c.dataDir, "jetstream"),
		JetStreamMaxMemory: c.maxMemory,
		JetStreamMaxStore:  c.maxStore,
		SyncAlways:         c.syncInterval == 0,
		SyncInterval:       c.syncInterval,
		NoSigs:             true,
		MaxPayload:         1 << 20,
	}
	listen := c.listen
	if listen == "" && c.mode == ModeCluster {
		listen = "127.0.0.1:-1" // routing needs a client listener
	}
	if listen == "" {
		o.DontListen = true
	} else {
		host, port, _ := splitHostPort(listen)
		o.Host, o.Port = host, port
	}
	if !o.DontListen && !c.listenNoAuth {
		// Every client logs in: the process's own connection with
		// credentials made for it here, others with WithListenAuth's.
		n.inprocPassword = randomSecret()
		o.Users = []*server.User{{Username: inprocUser, Password: n.inprocPassword}}
		if c.listenPassword != "" {
			o.Users = append(o.Users, &server.User{Username: c.listenUser, Password: c.listenPassword})
		}
	}
	if c.mode == ModeCluster {
		cl := c.cluster
		if cl.Password != "" && cl.Username == "" {
			cl.Username = "concord"
		}
		host, port, _ := splitHostPort(cl.Listen)
		o.Cluster = server.ClusterOpts{
			Name: cl.Name, Host: host, Port: port,
			Username: cl.Username, Password: cl.Password,
			TLSConfig: cl.TLS,
		}
		if o.Cluster.Name == "" {
			o.Cluster.Name = "concord"
		}
		if cl.TLS != nil {
			o.Cluster.TLSTimeout = 2
		}
		for _, p := range cl.Peers {
			if p == cl.Listen {
				continue
			}
			u := &url.URL{Scheme: "nats-route", Host: p}
			if cl.Username != "" {
				u.User = url.UserPassword(cl.Username, cl.Password)
			}
			o.Routes = append(o.Routes, u)
		}
	}
	return o, nil
}

func (n *Node) startServer(ctx context.Context) error {
	opts, err := n.serverOptions()
	if err != nil {
		return err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("coord: nats server: %w", err)
	}
	srv.SetLoggerV2(n.log, n.cfg.logLevel < -4, false, false)
	n.srv = srv
	srv.Start()
	for !srv.ReadyForConnections(10 * time.Millisecond) {
		if msg := n.log.fatalError(); msg != "" {
			return fmt.Errorf("coord: nats server failed to start: %s", msg)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("coord: nats server not accepting connections: %w", ctx.Err())
		}
	}
	if msg := n.log.fatalError(); msg != "" {
		return fmt.Errorf("coord: nats server failed to start: %s", msg)
	}
	if !srv.JetStreamEnabled() {
		return fmt.Errorf("coord: JetStream did not start (store %s): check that the directory is writable and the limits are valid", opts.StoreDir)
	}
	return nil
}

func (n *Node) connect() error {
	name := "concord:" + n.cfg.name
	if n.srv != nil {
		opts := []nats.Option{nats.InProcessServer(n.srv), nats.Name(name), nats.MaxReconnects(-1), nats.ErrorHandler(n.asyncError)}
		if n.inprocPassword != "" {
			opts = append(opts, nats.UserInfo(inprocUser, n.inprocPassword))
		}
		nc, err := nats.Connect("", opts...)
		if err != nil {
			return fmt.Errorf("coord: connect to embedded node: %w", err)
		}
		n.nc = nc
		return nil
	}
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.Timeout(5 * time.Second), nats.ErrorHandler(n.asyncError)}
	a := n.cfg.auth
	if a.Username != "" {
		opts = append(opts, nats.UserInfo(a.Username, a.Password))
	}
	if a.Token != "" {
		opts = append(opts, nats.Token(a.Token))
	}
	if a.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	}
	if a.NKeySeedFile != "" {
		o, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			return fmt.Errorf("coord: nkey seed: %w", err)
		}
		opts = append(opts, o)
	}
	if a.TLS != nil {
		opts = append(opts, nats.Secure(a.TLS))
	}
	nc, err := nats.Connect(strings.Join(n.cfg.urls, ","), opts...)
	if err != nil {
		if !errors.Is(err, nats.ErrAuthorization) && !errors.Is(err, nats.ErrAuthExpired) && !errors.Is(err, nats.ErrAuthRevoked) {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return fmt.Errorf("coord: connect to %s: %w", strings.Join(n.cfg.urls, ","), err)
	}
	n.nc = nc
	return nil
}

// asyncError logs an error the server sent or the connection met outside
// any request (nats.go would print it to stderr).
func (n *Node) asyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	attrs := []any{slog.Any("error", err)}
	if sub != nil {
		attrs = append(attrs, slog.String("subject", sub.Subject))
	}
	n.cfg.logger.Warn("coord: connection error", attrs...)
}

// replicaCount picks the replica count of Concord's buckets and streams.
func (n *Node) replicaCount() int {
	if n.cfg.replicas > 0 {
		return n.cfg.replicas
	}
	size := 1
	switch n.cfg.mode {
	case ModeCluster:
		peers := map[string]bool{}
		for _, p := range n.cfg.cluster.Peers {
			if p != n.cfg.cluster.Listen {
				peers[p] = true
			}
		}
		size += len(peers)
	case ModeClient:
		// The servers this client knows are a view, not the cluster: a
		// node that is down is missing from it. A server that says it is
		// in a cluster gets the clustered default; a 2-node cluster
		// needs WithReplicas(1).
		if n.nc.ConnectedClusterName() != "" {
			size = 3
		}
	}
	if size >= 3 {
		return 3
	}
	return 1
}

// attemptTimeout bounds one attempt to create Concord's buckets and
// streams.
const attemptTimeout = 2 * time.Second

// stopGrace bounds how long an attempt in flight may go on after Open's
// context ended.
const stopGrace = 500 * time.Millisecond

// waitReady creates Concord's buckets and streams, retrying while the
// cluster forms (no meta leader yet, too few peers for R3).
func (n *Node) waitReady(ctx context.Context) error {
	backoff := 10 * time.Millisecond
	for {
		// When ctx ends, the attempt in flight gets stopGrace to finish:
		// the server goes on creating what an abandoned request asked for,
		// and a stream it adds while Close shuts it down is never stopped
		// (its goroutines outlive the server). An embedded node answers in
		// milliseconds; a cluster that is still forming may not answer at
		// all, so the grace is bounded.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), attemptTimeout)
		stopAfter := context.AfterFunc(ctx, func() { time.AfterFunc(stopGrace, cancel) })
		err := ensureResources(actx, n.js, n.replicas, n.cfg.replicas > 0)
		stopAfter()
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
			errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("coord: %w", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("coord: not ready (%d replicas wanted): %w: %w; last error: %v", n.replicas, ErrUnavailable, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}

// LoopbackOnly reports whether every server the node runs, routes to or
// connects to is on a loopback address: an embedded node, a cluster whose
// route addresses are all loopback, or client mode against loopback URLs.
// Only then can an instance advertise a loopback URL to the others.
func (n *Node) LoopbackOnly() bool {
	var hosts []string
	switch n.cfg.mode {
	case ModeCluster:
		hosts = append(hosts, n.cfg.cluster.Listen)
		hosts = append(hosts, n.cfg.cluster.Peers...)
	case ModeClient:
		for _, u := range n.cfg.urls {
			if pu, err := url.Parse(u); err == nil && pu.Host != "" {
				hosts = append(hosts, pu.Host)
			} else {
				hosts = append(hosts, u)
			}
		}
	}
	return allLoopback(hosts)
}

// allLoopback reports whether every host (or host:port) is "localhost" or
// a loopback IP.
func allLoopback(hosts []string) bool {
	for _, hp := range hosts {
		host, _, err := net.SplitHostPort(hp)
		if err != nil {
			host = hp
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return false
		}
	}
	return true
}

// Mode returns the node's mode.
func (n *Node) Mode() Mode { return n.cfg.mode }

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.name }

// Replicas returns the replica count of Concord's buckets and streams.
func (n *Node) Replicas() int { return n.replicas }

// Conn returns the node's NATS connection. Do not close it; Close does.
func (n *Node) Conn() *nats.Conn { return n.nc }

// JetStream returns the node's JetStream context.
func (n *Node) JetStream() jetstream.JetStream { return n.js }

// ClientURL returns the URL NATS clients reach the embedded node at, or ""
// when it does not listen (embedded mode without WithListen) or runs no node.
func (n *Node) ClientURL() string {
	if n.srv == nil || n.srv.Addr() == nil {
		return ""
	}
	return n.srv.ClientURL()
}

// OnRelease registers fn to be called by Release: a lease holder (every
// lock.Session registers itself) gives back what it holds. fn must be
// safe to call concurrently with anything else the holder does, and more
// than once. The returned function unregisters fn; call it when the holder
// ends.
func (n *Node) OnRelease(fn func()) (remove func()) {
	n.releaseMu.Lock()
	defer n.releaseMu.Unlock()
	if n.releasers == nil {
		n.releasers = map[uint64]func(){}
	}
	n.releaseSeq++
	id := n.releaseSeq
	n.releasers[id] = fn
	return func() {
		n.releaseMu.Lock()
		defer n.releaseMu.Unlock()
		delete(n.releasers, id)
	}
}

// Shared returns the value the node holds under key, made by mk on first
// use. Packages built on the node keep per-node state here (the lock
// package's shared watches), so that it lives and dies with the node
// rather than in a global. Use a key of an unexported type of the calling
// package.
func (n *Node) Shared(key any, mk func() any) any {
	n.sharedMu.Lock()
	defer n.sharedMu.Unlock()
	if v, ok := n.shared[key]; ok {
		return v
	}
	if n.shared == nil {
		n.shared = map[any]any{}
	}
	v := mk()
	n.shared[key] = v
	return v
}

// Release gives back every lease held through the node, the locks and
// leaderships of every lock.Session on it, by calling the functions
// registered with OnRelease concurrently, and waits until they return or
// ctx ends. A process that stops calls it first, so that what it held is
// free at once rather than when its leases expire; Close calls it too.
// Leases it cannot give back (the node is unreachable) expire on their own.
func (n *Node) Release(ctx context.Context) {
	n.releaseMu.Lock()
	fns := slices.Collect(maps.Values(n.releasers))
	n.releaseMu.Unlock()
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Go(fn)
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// releaseTimeout bounds the Release that Close makes.
const releaseTimeout = 2 * time.Second

// Close gives back the leases held through the node (see Release), closes
// the connection and, for an embedded node, shuts the server down
// gracefully (its Raft leaderships move to peers first) and releases the
// data directory. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		if n.nc != nil && !n.nc.IsClosed() {
			ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
			n.Release(ctx)
			cancel()
		}
		if n.srv != nil && !waitServerGoroutinesStarted(settleTimeout) {
			n.cfg.logger.Warn("coord: nats-server goroutines still waiting to start; shutting down anyway",
				slog.Duration("waited", settleTimeout))
		}
		if n.nc != nil {
			n.nc.Close()
		}
		if n.srv != nil {
			n.srv.Shutdown()
			n.srv.WaitForShutdown()
		}
		n.closeErr = n.lock.unlock()
	})
	return n.closeErr
}
