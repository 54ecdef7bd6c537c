package coord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
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
	return n.waitReady(ctx)
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
		opts := []nats.Option{nats.InProcessServer(n.srv), nats.Name(name), nats.MaxReconnects(-1)}
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
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.Timeout(5 * time.Second)}
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
		return fmt.Errorf("coord: connect to %s: %w", strings.Join(n.cfg.urls, ","), err)
	}
	n.nc = nc
	return nil
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
		size = len(n.nc.Servers())
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
		err := ensureResources(actx, n.js, n.replicas)
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
			return fmt.Errorf("coord: not ready (%d replicas wanted): %w; last error: %v", n.replicas, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
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

// Close closes the connection and, for an embedded node, shuts the server
// down gracefully (its Raft leaderships move to peers first) and releases
// the data directory. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
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
