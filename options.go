package concord

import (
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/tcc"
)

// DefaultAddr is where an App serves RPCs by default, unless the PORT
// environment variable is set (see WithAddr).
const DefaultAddr = "127.0.0.1:8080"

// PortEnv is the environment variable through which container platforms
// (Cloud Run, Knative, Heroku-style hosts) give a process the port to
// serve on. An App honours it when WithAddr was not called.
const PortEnv = "PORT"

// DefaultAdminAddr is where an App serves its admin endpoints (status) by
// default: loopback only, apart from the RPC port.
const DefaultAdminAddr = "127.0.0.1:9080"

// Option configures an App.
type Option interface{ apply(*appConfig) }

type optionFunc func(*appConfig)

func (f optionFunc) apply(c *appConfig) { f(c) }

type appConfig struct {
	addr       string // WithAddr's; see listenAddr
	addrSet    bool   // WithAddr was called
	adminAddr  string
	adminCreds string // "" → AdminCredentialsFile in dataDir, created when missing
	dataDir    string
	logger     *slog.Logger
	serverOpts []rpc.ServerOption
	clientOpts []rpc.ClientOption
	coordOpts  []coord.Option
	advertise  string
	zone       string
	version    string
	drainDelay time.Duration
	signals    bool
	tccOpts    []tcc.CoordinatorOption
	noRecovery bool
	tccLocal   []*rpc.ServicePolicy
	tccBarrier []tcc.Option
	metricsReg *prometheus.Registry // WithMetricsRegistry's; nil → the App's own
	noMetrics  bool
	noConsole  bool
	tracer     trace.TracerProvider          // WithTracerProvider's; nil → the OTEL_* environment's, if any
	propagator propagation.TextMapPropagator // WithPropagator's
}

// DefaultDrainDelay is how long a stopping App keeps serving after it left
// the registry, so that every client's view drops it before it refuses
// connections: the registry's watches deliver a removal within
// milliseconds, and a resolver whose watch broke re-reads within
// registry.DefaultRelistInterval.
const DefaultDrainDelay = time.Second

func defaultAppConfig() appConfig {
	return appConfig{
		adminAddr: DefaultAdminAddr, dataDir: coord.DefaultDataDir,
		logger: slog.Default(), drainDelay: DefaultDrainDelay,
	}
}

// WithDrainDelay sets how long a stopping App keeps serving after it left
// the registry (only if it had registered). Default: DefaultDrainDelay.
func WithDrainDelay(d time.Duration) Option {
	return optionFunc(func(c *appConfig) { c.drainDelay = max(d, 0) })
}

// WithSignalHandling makes Run stop on SIGTERM and SIGINT, as well as at the
// end of its context. Turn it on in main, and only there: libraries, tests,
// fx (concordfx stops the App through fx's lifecycle) and processes with
// several Apps stop them through their contexts. Default: off.
func WithSignalHandling() Option {
	return optionFunc(func(c *appConfig) { c.signals = true })
}

// WithAddr sets the address RPCs are served on. Default: all interfaces
// at the port in the PORT environment variable (":"+$PORT), as container
// platforms expect, when it is set; else DefaultAddr. Either way the
// registered URL follows WithAdvertiseURL's default: an unspecified IP is
// replaced by the host name.
func WithAddr(addr string) Option {
	return optionFunc(func(c *appConfig) { c.addr = addr; c.addrSet = true })
}

// listenAddr returns the address to serve on: WithAddr's, else ":"+$PORT
// when PORT is set, else DefaultAddr.
func (c *appConfig) listenAddr() string {
	if c.addrSet {
		return c.addr
	}
	if port := os.Getenv(PortEnv); port != "" {
		return ":" + port
	}
	return DefaultAddr
}

// WithAdminAddr sets the address of the admin listener, which serves
// StatusPath (the coordination status and every service instance's URL,
// for `concord status`) to anyone who reaches it, and ConfigPath (dynamic
// configuration, `concord config`) only to holders of an admin credential
// (WithAdminCredentials). It also serves MetricsPath (Prometheus metrics;
// WithMetricsRegistry, WithoutMetrics) and the web console over the status
// (console.Path; WithoutConsole) to anyone who reaches it. Keep it
// on loopback or a private network. "" disables it; a port in use is
// logged and the App runs without it.
// Default: DefaultAdminAddr.
func WithAdminAddr(addr string) Option {
	return optionFunc(func(c *appConfig) { c.adminAddr = addr })
}

// WithAdminCredentials names the file of admin credentials that the admin
// listener checks on every config route (ConfigPath): lines of "name
// token" (see `concord config -h`). A request sends one token as
// "Authorization: Bearer <token>"; the credential's name is recorded as
// the writer of each change. The file is read on every such request, so
// credentials can be added or rotated without a restart; it must exist.
// Default: AdminCredentialsFile in the data directory, created with one
// random credential named "admin" (mode 0600) when missing.
func WithAdminCredentials(path string) Option {
	return optionFunc(func(c *appConfig) { c.adminCreds = path })
}

// WithDataDir sets the directory of the embedded node and local state.
// Default: coord.DefaultDataDir.
func WithDataDir(dir string) Option {
	return optionFunc(func(c *appConfig) { c.dataDir = dir })
}

// WithLogger sets the logger of the server and the node. Default:
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *appConfig) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithServerOptions passes options to the RPC server.
func WithServerOptions(opts ...rpc.ServerOption) Option {
	return optionFunc(func(c *appConfig) { c.serverOpts = append(c.serverOpts, opts...) })
}

// WithClientOptions passes options to the Conn behind App.Client, for
// example rpc.WithBalancing or rpc.WithFallback.
func WithClientOptions(opts ...rpc.ClientOption) Option {
	return optionFunc(func(c *appConfig) { c.clientOpts = append(c.clientOpts, opts...) })
}

// WithAdvertiseURL sets the base URL other instances reach this one at, as
// registered in the registry. Default: "http://" plus the listen address,
// with an unspecified IP (":8080") replaced by the host name.
func WithAdvertiseURL(url string) Option {
	return optionFunc(func(c *appConfig) { c.advertise = url })
}

// WithZone sets the instance's zone: it is registered with the instance,
// and App.Client prefers instances in the same zone. Default: none.
func WithZone(zone string) Option {
	return optionFunc(func(c *appConfig) { c.zone = zone })
}

// WithVersion sets the version registered with the instance. Default: "".
func WithVersion(v string) Option {
	return optionFunc(func(c *appConfig) { c.version = v })
}

// WithCoordOptions passes options to the coordination node, for example
// coord.WithCluster or coord.WithClient.
func WithCoordOptions(opts ...coord.Option) Option {
	return optionFunc(func(c *appConfig) { c.coordOpts = append(c.coordOpts, opts...) })
}

// WithTCCOptions passes options to the App's TCC coordinator (App.TCC),
// for example tcc.WithDefaultTimeout.
func WithTCCOptions(opts ...tcc.CoordinatorOption) Option {
	return optionFunc(func(c *appConfig) { c.tccOpts = append(c.tccOpts, opts...) })
}

// WithoutTCCRecovery keeps the App out of TCC recovery. By default every
// App campaigns in tcc.RecoveryElection and, while leader, finishes the
// transactions that crashed coordinators left (see tcc.Coordinator.Recover);
// a cluster needs at least one App that does, or an undecided transaction
// stays reserved until one starts.
func WithoutTCCRecovery() Option {
	return optionFunc(func(c *appConfig) { c.noRecovery = true })
}

// WithTCCLocalBarrier makes the App a TCC participant for services (the
// generated <Service>Policy()) with its barrier in the App's local Badger
// store: their Try, Confirm and Cancel handlers write through
// tcc.BadgerTx(ctx), and package tcc's barrier guarantees hold (see its
// doc). The barrier goes in the TCC slot of the server chain, before any
// rpc.WithTCCParticipant given with WithServerOptions (for example a SQL
// barrier, tcc.NewSQLBarrier, for services whose state is in a database).
// A coordinator sends every phase of a branch to the instance that got
// its Try, and an App keeps its instance ID in its data directory, so a
// restarted instance finishes its branches. The App deletes the barrier
// rows of finished branches after their retention (tcc.WithRetention, 7
// days by default), hourly (tcc.RunCleanup).
func WithTCCLocalBarrier(services []*rpc.ServicePolicy, opts ...tcc.Option) Option {
	return optionFunc(func(c *appConfig) {
		c.tccLocal = append(c.tccLocal, services...)
		c.tccBarrier = append(c.tccBarrier, opts...)
	})
}

// WithMetricsRegistry makes the App register its metrics (see package
// metrics) with reg, and serve reg, with whatever else it holds, at
// MetricsPath on the admin listener. Register your own metrics there to
// serve them beside the App's. One registry holds one App's metrics: a
// second App's are refused and logged. Default: a registry of the App's
// own, with the Go runtime and process collectors.
func WithMetricsRegistry(reg *prometheus.Registry) Option {
	return optionFunc(func(c *appConfig) { c.metricsReg = reg })
}

// WithoutMetrics turns the App's metrics off: no hooks on the server or
// the TCC coordinator, and no MetricsPath. Default: metrics on. An
// rpc.WithMetrics given with WithServerOptions, or a tcc.WithPhaseHook with
// WithTCCOptions, replaces the App's hook either way.
func WithoutMetrics() Option {
	return optionFunc(func(c *appConfig) { c.noMetrics = true })
}

// WithoutConsole leaves the web console (package console) off the admin
// listener. Default: the admin listener serves it at console.Path, beside
// the status it reads.
func WithoutConsole() Option {
	return optionFunc(func(c *appConfig) { c.noConsole = true })
}

// WithTracerProvider traces the App with tp: a server span for every call
// it serves and a client span for every call through App.Client (both
// with W3C trace context in the request headers, for every protocol), and
// spans for its lock waits (App.Mutex, App.Election) and its TCC
// transactions and their phases. The App does not shut tp down. Default:
// a provider built from the OTEL_* environment variables when they
// configure an exporter (see package tracing), which the App flushes and
// shuts down when Run ends (an App that is never run leaves it to the
// process's exit); else no tracing, and no tracing code on any call path.
// A configuration the App cannot build (an unsupported exporter or
// protocol) is logged at Error and the App runs untraced. Messages
// (package msg) are not wired by the App: pass App.TracerProvider to
// msg.WithTracing.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *appConfig) { c.tracer = tp })
}

// WithPropagator sets how the App's traced calls carry trace context in
// headers. Default: with WithTracerProvider, the global propagator
// (otel.SetTextMapPropagator) when one is set, else W3C Trace Context;
// with the environment's provider, the one OTEL_PROPAGATORS names
// (tracing.Propagator).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return optionFunc(func(c *appConfig) { c.propagator = p })
}
