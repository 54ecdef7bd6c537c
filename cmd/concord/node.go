package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/concordrpc/concord/console"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/registry"
	"github.com/concordrpc/concord/metrics"
)

// The paths `concord node -http` serves; deploy/kubernetes probes them.
const (
	healthPath  = "/healthz"        // liveness: 200 while the process serves HTTP
	readyPath   = "/readyz"         // readiness: 200 once the node is open and JetStream answers
	statusPath  = "/concord/status" // coordination status as JSON (concord status)
	metricsPath = "/metrics"        // Prometheus metrics of the coordination status
)

// readyCheckTimeout bounds the JetStream request behind each /readyz.
const readyCheckTimeout = 2 * time.Second

// nodeCmd runs a standalone coordination node until ctx ends.
func nodeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", coord.DefaultDataDir, "data directory")
	name := fs.String("name", "concord", "node name, stable and unique in a cluster (with -peers-from-statefulset: the pod name)")
	listen := fs.String("listen", "127.0.0.1:4222", "address NATS clients (apps in client mode) connect to")
	user := fs.String("user", cmp.Or(os.Getenv("CONCORD_NATS_USER"), "concord"), "username NATS clients must present (env CONCORD_NATS_USER)")
	password := fs.String("password", os.Getenv("CONCORD_NATS_PASSWORD"), "password NATS clients must present; required (env CONCORD_NATS_PASSWORD)")
	cluster := fs.String("cluster", "", "cluster mode: this node's route address, host:port (with -peers-from-statefulset: default all interfaces at the port of its own peer address)")
	peers := fs.String("peers", "", "cluster mode: route addresses of all nodes, comma-separated")
	fromSTS := fs.Bool("peers-from-statefulset", false, "cluster mode in a StatefulSet: derive -name, -cluster and -peers from the pod name ($POD_NAME, else the host name: <statefulset>-<ordinal>), -replicas and -peer-template")
	replicas := fs.Int("replicas", envInt("CONCORD_REPLICAS"), "with -peers-from-statefulset: the StatefulSet's replica count (env CONCORD_REPLICAS)")
	peerTemplate := fs.String("peer-template", os.Getenv("CONCORD_PEER_TEMPLATE"), "with -peers-from-statefulset: route address of the peer with ordinal {ordinal} and pod name {name}, e.g. {name}.concord.NAMESPACE.svc.cluster.local:6222 (env CONCORD_PEER_TEMPLATE)")
	routeUser := fs.String("route-user", os.Getenv("CONCORD_ROUTE_USER"), "cluster mode: username routes must present (env CONCORD_ROUTE_USER; default concord)")
	routePassword := fs.String("route-password", os.Getenv("CONCORD_ROUTE_PASSWORD"), "cluster mode: password routes must present, the same on every node; required (env CONCORD_ROUTE_PASSWORD)")
	httpAddr := fs.String("http", "127.0.0.1:8222", "address of the HTTP endpoint: GET "+healthPath+", "+readyPath+", "+statusPath+", Prometheus metrics at "+metricsPath+" and the web console at "+console.Path+"; empty disables it")
	readyTimeout := fs.Duration("ready-timeout", 0, "give up if the node is not ready within this time (a cluster node waits for a quorum of its peers); 0 waits without limit, "+readyPath+" saying why")
	logLevel := fs.String("log-level", "warn", "lowest level of NATS logs: debug, info, warn, error")
	logFormat := fs.String("log-format", cmp.Or(os.Getenv("CONCORD_LOG_FORMAT"), "text"), "log format: text or json, one object per line (env CONCORD_LOG_FORMAT)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() != 0 {
		return usageError{"node takes flags only"}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError{fmt.Sprintf("-log-level: %v", err)}
	}
	opts := &slog.HandlerOptions{Level: level}
	var logger *slog.Logger
	switch *logFormat {
	case "text":
		logger = slog.New(slog.NewTextHandler(stderr, opts))
	case "json":
		logger = slog.New(slog.NewJSONHandler(stderr, opts))
	default:
		return usageError{fmt.Sprintf("-log-format %q: want text or json", *logFormat)}
	}
	if *fromSTS {
		if *peers != "" {
			return usageError{"-peers and -peers-from-statefulset exclude each other"}
		}
		pod := os.Getenv("POD_NAME")
		if pod == "" {
			pod, _ = os.Hostname()
		}
		sts, err := statefulSetPeers(pod, *replicas, *peerTemplate)
		if err != nil {
			return usageError{"-peers-from-statefulset: " + err.Error()}
		}
		if !flagSet(fs, "name") {
			*name = pod
		}
		if *cluster == "" {
			*cluster = sts.listen
		}
		*peers = strings.Join(sts.peers, ",")
	}
	copts := []coord.Option{
		coord.WithDataDir(*data), coord.WithName(*name), coord.WithListen(*listen),
		coord.WithLogger(logger), coord.WithLogLevel(level),
	}
	if *password != "" {
		copts = append(copts, coord.WithListenAuth(*user, *password))
	}
	if *cluster != "" {
		copts = append(copts, coord.WithCluster(coord.Cluster{
			Listen: *cluster, Peers: splitList(*peers), Username: *routeUser, Password: *routePassword,
		}))
	}

	// The endpoint comes up before the node, so that a liveness probe
	// passes while a cluster node waits for its peers.
	var state nodeState
	var status string
	if *httpAddr != "" {
		ln, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			return fmt.Errorf("status endpoint: %w", err)
		}
		hs := &http.Server{Handler: state.handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = hs.Serve(ln) }()
		defer hs.Close()
		status = " status=http://" + ln.Addr().String() + statusPath + " console=http://" + ln.Addr().String() + console.Path +
			" metrics=http://" + ln.Addr().String() + metricsPath
	}
	octx, cancel := context.WithDeadline(ctx, time.Now().Add(100*365*24*time.Hour))
	if *readyTimeout > 0 {
		octx, cancel = context.WithTimeout(ctx, *readyTimeout)
	}
	node, err := coord.Open(octx, copts...)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting (SIGTERM while waiting for the cluster)
		}
		return err
	}
	defer node.Close()
	resolver := registry.NewResolver(node)
	defer resolver.Close()
	state.open(node, resolver)
	fmt.Fprintf(stdout, "concord node %s ready: mode=%s nats=%s replicas=%d%s\n",
		node.Name(), node.Mode(), node.ClientURL(), node.Replicas(), status)
	<-ctx.Done()
	return nil
}

// nodeState is what the HTTP endpoint of `concord node` serves from: nil
// until the node is open.
type nodeState struct {
	cur atomic.Pointer[openNode]
}

type openNode struct {
	node     *coord.Node
	resolver *registry.Resolver
	status   http.Handler
}

func (s *nodeState) open(node *coord.Node, resolver *registry.Resolver) {
	s.cur.Store(&openNode{node: node, resolver: resolver, status: registry.StatusHandler(node, resolver)})
}

// readStatus reads the open node's status for the metrics, or says why
// there is none yet.
func (s *nodeState) readStatus(ctx context.Context) (*registry.Status, error) {
	o := s.cur.Load()
	if o == nil {
		return nil, errors.New("coordination starting: the node is not ready yet")
	}
	return registry.ReadStatus(ctx, o.node, o.resolver)
}

func (s *nodeState) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+healthPath, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET "+readyPath, func(w http.ResponseWriter, r *http.Request) {
		if why := s.notReady(r.Context()); why != "" {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET "+statusPath, func(w http.ResponseWriter, r *http.Request) {
		o := s.cur.Load()
		if o == nil {
			coord.WriteStatusError(w, errors.New("coordination starting: the node is not ready yet (a cluster node waits for a quorum of its peers)"))
			return
		}
		o.status.ServeHTTP(w, r)
	})
	// The console reads statusPath from the browser, so it shows why the
	// node is not ready yet, too. A node has no dead-letter routes: the
	// page names the CLI for them.
	mux.Handle("GET "+console.Path, console.Handler(console.WithStatusPath(statusPath), console.WithDeadLettersPath("")))
	// The coordination part of an App's metrics, read from the status when
	// scraped (cached, like an App's): what a node knows of the cluster.
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCoord(s.readStatus))
	mux.Handle("GET "+metricsPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	return mux
}

// notReady returns why the node cannot serve coordination now, or "": it
// is open, connected to its server, and JetStream answers (in a cluster:
// a meta leader is elected, so a quorum of peers is up).
func (s *nodeState) notReady(ctx context.Context) string {
	o := s.cur.Load()
	if o == nil {
		return "starting: waiting for the node (a cluster node waits for a quorum of its peers)"
	}
	if st := o.node.Conn().Status(); st != nats.CONNECTED {
		return "connection to the server " + strings.ToLower(st.String())
	}
	ctx, cancel := context.WithTimeout(ctx, readyCheckTimeout)
	defer cancel()
	if _, err := o.node.JetStream().AccountInfo(ctx); err != nil {
		return "JetStream does not answer: " + err.Error()
	}
	return ""
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// envInt returns the integer in the environment variable key, or 0.
func envInt(key string) int {
	n, _ := strconv.Atoi(os.Getenv(key))
	return n
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
