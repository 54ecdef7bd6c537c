package coord

import (
	"crypto/tls"
	"log/slog"
	"time"
)

// Mode says where the coordination backend runs.
type Mode uint8

// The modes.
const (
	// ModeEmbedded runs one JetStream node inside the process, with an
	// in-process connection and no network listener unless WithListen asks
	// for one. Coordination state is R1. The default.
	ModeEmbedded Mode = iota
	// ModeCluster runs one node per process; nodes route to their peers by
	// configured addresses. Coordination state is R3 once the cluster has
	// at least 3 nodes.
	ModeCluster
	// ModeClient runs no node and connects to an existing NATS cluster.
	ModeClient
)

// String returns the mode's name.
func (m Mode) String() string {
	switch m {
	case ModeEmbedded:
		return "embedded"
	case ModeCluster:
		return "cluster"
	case ModeClient:
		return "client"
	}
	return "unknown"
}

// Defaults.
const (
	// DefaultDataDir is where an embedded or clustered node keeps its state.
	DefaultDataDir = "data"
	// DefaultMaxMemory caps JetStream's memory storage.
	DefaultMaxMemory = 64 << 20
	// DefaultMaxStore caps JetStream's file storage.
	DefaultMaxStore = 1 << 30
	// DefaultReadyTimeout bounds Open when ctx has no deadline.
	DefaultReadyTimeout = 30 * time.Second
)

// Option configures Open.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// Cluster configures ModeCluster.
type Cluster struct {
	// Name is the cluster's name; every node must use the same one.
	// Default: "concord".
	Name string
	// Listen is this node's route address, "host:port". Required.
	Listen string
	// Peers are the route addresses of the other nodes, "host:port". A
	// node may list every node, itself included; it ignores itself.
	Peers []string
	// Username and Password are required of every route, and sent to
	// every peer; every node must use the same. Username defaults to
	// "concord" when only Password is set. A cluster needs a Password or
	// mutual TLS unless InsecureOpenRoutes is set.
	Username, Password string
	// TLS, when set, encrypts routes and verifies peers with it. Use the
	// same CA on every node and set both Certificates and RootCAs/ClientCAs.
	// With ClientAuth tls.RequireAndVerifyClientCert it authenticates
	// routes on its own (mutual TLS), without a Password.
	TLS *tls.Config
	// InsecureOpenRoutes lets the node start without route credentials:
	// any server that reaches Listen can then join the cluster and read,
	// write and delete every bucket (deleting the locks bucket resets
	// fencing tokens). Only for a cluster whose route addresses nobody
	// else can reach.
	InsecureOpenRoutes bool
}

// routeAuth reports whether routes authenticate peers: with a password, or
// with mutual TLS.
func (cl Cluster) routeAuth() bool {
	return cl.Password != "" || (cl.TLS != nil && cl.TLS.ClientAuth == tls.RequireAndVerifyClientCert)
}

// ClientAuth holds credentials for ModeClient.
type ClientAuth struct {
	// Username and Password authenticate with user and password.
	Username, Password string
	// Token authenticates with a token.
	Token string
	// CredsFile is a NATS credentials file (JWT and nkey seed).
	CredsFile string
	// NKeySeedFile is a file holding an nkey seed ("SU...").
	NKeySeedFile string
	// TLS configures TLS to the servers.
	TLS *tls.Config
}

type config struct {
	mode           Mode
	dataDir        string
	name           string
	listen         string
	listenUser     string
	listenPassword string
	listenNoAuth   bool
	cluster        Cluster
	urls           []string
	auth           ClientAuth
	replicas       int
	logger         *slog.Logger
	logLevel       slog.Level
	maxMemory      int64
	maxStore       int64
	syncInterval   time.Duration // 0: fsync every write
	readyTimeout   time.Duration
}

// ModeOf returns the mode a node opened with opts runs in (ModeEmbedded
// unless WithClient or WithCluster is among them, the last one winning),
// without opening anything: for callers that accept only some modes.
func ModeOf(opts ...Option) Mode {
	var c config
	for _, o := range opts {
		o.apply(&c)
	}
	return c.mode
}

func defaultConfig() config {
	return config{
		dataDir:      DefaultDataDir,
		name:         "concord",
		logger:       slog.Default(),
		logLevel:     slog.LevelWarn,
		maxMemory:    DefaultMaxMemory,
		maxStore:     DefaultMaxStore,
		readyTimeout: DefaultReadyTimeout,
	}
}

// WithDataDir sets the data directory: JetStream state lives in
// dir/jetstream. One process at a time may use a directory; Open takes a
// lock on dir/LOCK. Default: DefaultDataDir, relative to the working
// directory.
func WithDataDir(dir string) Option {
	return optionFunc(func(c *config) { c.dataDir = dir })
}

// WithName sets the node's name, which must be stable across restarts and
// unique in a cluster. Default: "concord".
func WithName(name string) Option {
	return optionFunc(func(c *config) { c.name = name })
}

// WithListen makes the node accept NATS clients on addr ("host:port"; port
// -1 picks a free one), for `concord status`, tools, and apps in client
// mode. Default: no listener in embedded mode, 127.0.0.1:-1 in cluster mode
// (a clustered node needs one).
func WithListen(addr string) Option {
	return optionFunc(func(c *config) { c.listen = addr })
}

// WithListenAuth sets the username and password that NATS clients of the
// node's listener (WithListen) log in with: apps in client mode, tools.
// A node that listens requires it, unless WithInsecureListenNoAuth. The
// process's own connection uses credentials generated at Open, so a
// cluster node's listener (which routing needs) admits nobody else when
// WithListenAuth is not given.
func WithListenAuth(username, password string) Option {
	return optionFunc(func(c *config) { c.listenUser, c.listenPassword = username, password })
}

// WithInsecureListenNoAuth lets WithListen's listener accept NATS clients
// without credentials: anyone who reaches the address can then read,
// write and delete every bucket. Only for a listener on loopback in a
// machine nobody else uses.
func WithInsecureListenNoAuth() Option {
	return optionFunc(func(c *config) { c.listenNoAuth = true })
}

// WithCluster selects ModeCluster.
func WithCluster(cl Cluster) Option {
	return optionFunc(func(c *config) { c.mode, c.cluster = ModeCluster, cl })
}

// WithClient selects ModeClient: connect to the NATS servers at urls
// ("nats://host:4222") with auth.
func WithClient(urls []string, auth ClientAuth) Option {
	return optionFunc(func(c *config) { c.mode, c.urls, c.auth = ModeClient, urls, auth })
}

// WithReplicas sets the replica count of Concord's buckets and streams,
// raising or lowering the count of those that exist. Default: 3 in a
// cluster of at least 3 nodes (configured peers in cluster mode; in client
// mode, any server that reports a cluster name, whichever of its nodes are
// up or known to the client), else 1. Without this option an existing
// bucket or stream keeps a higher count than the default, and one whose
// count cannot be read is retried rather than written: a process that
// sees fewer servers than the cluster has never shrinks its redundancy.
// Set it to 1 for a client of a two-node cluster.
func WithReplicas(n int) Option {
	return optionFunc(func(c *config) { c.replicas = n })
}

// WithLogger routes the node's logs to l. NATS server logs below WithLogLevel
// are dropped. Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithLogLevel sets the lowest level of NATS server logs that reach the
// logger. Default: slog.LevelWarn.
func WithLogLevel(level slog.Level) Option {
	return optionFunc(func(c *config) { c.logLevel = level })
}

// WithLimits caps JetStream's memory and file storage, in bytes. Defaults:
// DefaultMaxMemory and DefaultMaxStore.
func WithLimits(maxMemory, maxStore int64) Option {
	return optionFunc(func(c *config) { c.maxMemory, c.maxStore = maxMemory, maxStore })
}

// WithSyncInterval relaxes durability: JetStream fsyncs every interval
// instead of before acknowledging each write. An acknowledged write may then
// be lost if the machine (not just the process) fails within interval. In an
// R3 cluster a write is acknowledged only once a majority holds it in
// memory, so relaxing costs durability only when a majority of machines fail
// together. Default: fsync before every acknowledgement.
func WithSyncInterval(interval time.Duration) Option {
	return optionFunc(func(c *config) { c.syncInterval = interval })
}

// WithReadyTimeout bounds Open when ctx has no deadline. Default:
// DefaultReadyTimeout.
func WithReadyTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.readyTimeout = d })
}
