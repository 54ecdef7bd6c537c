package concord

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/coord/registry"
	"github.com/concordrpc/concord/metrics"
	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/tcc"
)

// MetricsPath is where an App's admin listener serves Prometheus metrics
// (see WithMetricsRegistry and package metrics).
const MetricsPath = "/metrics"

// appMetrics is what an App exports to Prometheus.
type appMetrics struct {
	reg    *prometheus.Registry
	client *metrics.Client // nil if the registry refused it
	locks  *metrics.Locks  // nil if the registry refused it
}

// setupMetrics builds the App's metrics on its registry and returns the
// server and TCC options that feed them; nothing with WithoutMetrics. A
// part the registry refuses (a name already registered, as by a second
// App on one registry) is logged and left out.
func (a *App) setupMetrics() ([]rpc.ServerOption, []tcc.CoordinatorOption) {
	if a.cfg.noMetrics {
		return nil, nil
	}
	reg := a.cfg.metricsReg
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	a.metrics = &appMetrics{reg: reg}
	var serverOpts []rpc.ServerOption
	var tccOpts []tcc.CoordinatorOption
	known := func(procedure string) bool { return a.server.Policy(procedure) != nil }
	if s, err := metrics.NewServer(reg, known); err == nil {
		serverOpts = append(serverOpts, rpc.WithMetrics(s.Observe), rpc.WithInterceptors(s.Interceptor()))
	} else {
		a.cfg.logger.Error("concord: RPC metrics not exported", slog.Any("error", err))
	}
	if t, err := metrics.NewTCC(reg); err == nil {
		tccOpts = append(tccOpts, tcc.WithPhaseHook(t.Observe))
	} else {
		a.cfg.logger.Error("concord: TCC metrics not exported", slog.Any("error", err))
	}
	if err := reg.Register(metrics.NewCoord(a.readStatus)); err != nil {
		a.cfg.logger.Error("concord: coordination metrics not exported", slog.Any("error", err))
	}
	var err error
	if a.metrics.client, err = metrics.NewClient(reg); err != nil {
		a.cfg.logger.Error("concord: client metrics not exported", slog.Any("error", err))
	}
	if a.metrics.locks, err = metrics.NewLocks(reg); err != nil {
		a.cfg.logger.Error("concord: lock metrics not exported", slog.Any("error", err))
	}
	// Read at each scrape: the server and the client exist by then.
	if err := reg.Register(metrics.NewGovernance(metrics.GovernanceSource{
		Limits:   func() []rpc.LimitStatus { return a.server.LimitStatus() },
		Shed:     func() uint64 { return a.server.ShedCalls() },
		Breakers: func() []rpc.BreakerStatus { return a.conn.BreakerStatus() },
	})); err != nil {
		a.cfg.logger.Error("concord: governance metrics not exported", slog.Any("error", err))
	}
	return serverOpts, tccOpts
}

// metricsClientOptions returns the options that feed the client metrics
// to the App's Conn; none without metrics.
func (a *App) metricsClientOptions() []rpc.ClientOption {
	if a.metrics == nil || a.metrics.client == nil {
		return nil
	}
	return []rpc.ClientOption{rpc.WithClientMetrics(a.metrics.client.Observe)}
}

// lockOptions are the options of every Mutex and Election the App makes,
// before the caller's: this process named as the holder, and the lock
// metrics.
func (a *App) lockOptions() []lock.Option {
	opts := []lock.Option{lock.WithHolder(processName())}
	if a.metrics != nil && a.metrics.locks != nil {
		opts = append(opts, lock.WithEvents(a.metrics.locks.Observe))
	}
	return opts
}

// metricsHandler returns the handler of MetricsPath, or nil without
// metrics.
func (a *App) metricsHandler() http.Handler {
	if a.metrics == nil {
		return nil
	}
	return promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// readStatus reads the current node's status for the coordination
// metrics, or fails at once while there is no node.
func (a *App) readStatus(ctx context.Context) (*registry.Status, error) {
	g, err := a.statusGen()
	if err != nil {
		return nil, err
	}
	return registry.ReadStatus(ctx, g.node, g.resolver)
}
