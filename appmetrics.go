package concord

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	reg *prometheus.Registry
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
	return serverOpts, tccOpts
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
