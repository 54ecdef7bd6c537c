package concord

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/tcc"
	"github.com/concordrpc/concord/tracing"
)

// tracingShutdownTimeout bounds the flush of an App-built exporter at the
// end of Run.
const tracingShutdownTimeout = 5 * time.Second

// appTracing is the App's tracing: the provider and propagator its
// server, clients, locks and TCC coordinator use.
type appTracing struct {
	tp   trace.TracerProvider
	prop propagation.TextMapPropagator
	// flush exports the spans the provider holds (an SDK provider's
	// ForceFlush), or is nil: function mode calls it after each call.
	flush func(context.Context) error
}

// functionFlushTimeout bounds the flush of spans after each call in
// function mode; the call's deadline may end it sooner.
const functionFlushTimeout = time.Second

// flushSpans exports what the App's tracer provider holds, after a call
// in function mode: the process may be frozen until its next invocation,
// or for good. It is bounded by ctx and functionFlushTimeout; a failure
// is logged.
func (a *App) flushSpans(ctx context.Context) {
	if a.tracing == nil || a.tracing.flush == nil || ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, functionFlushTimeout)
	defer cancel()
	if err := a.tracing.flush(ctx); err != nil {
		a.cfg.logger.Warn("concord: spans not exported after the call", slog.Any("error", err))
	}
}

// setupTracing decides the App's tracing (WithTracerProvider, else the
// OTEL_* environment, else none) and returns the server, client and TCC
// options that install it; nothing when tracing is off, so that an
// untraced App runs no tracing code at all. A provider the App built from
// the environment is flushed and shut down when Run ends.
func (a *App) setupTracing() ([]rpc.ServerOption, []rpc.ClientOption, []tcc.CoordinatorOption) {
	tp, prop := a.cfg.tracer, a.cfg.propagator
	if tp == nil {
		built, err := tracing.FromEnv(context.Background())
		if err != nil {
			a.cfg.logger.Error("concord: tracing not configured; running without it", slog.Any("error", err))
			return nil, nil, nil
		}
		if built == nil {
			return nil, nil, nil
		}
		tp = built
		a.cfg.logger.Info("concord: tracing on: exporting spans with OTLP as the OTEL_* environment configures")
		a.onStop(func() {
			ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
			defer cancel()
			if err := built.Shutdown(ctx); err != nil {
				a.cfg.logger.Warn("concord: tracing shutdown", slog.Any("error", err))
			}
		})
		if prop == nil {
			if prop, err = tracing.Propagator(); err != nil {
				a.cfg.logger.Warn("concord: tracing propagator", slog.Any("error", err))
			}
		}
	}
	if prop == nil {
		prop = propagation.TraceContext{}
		if global := otel.GetTextMapPropagator(); len(global.Fields()) > 0 {
			prop = global
		}
	}
	a.tracing = &appTracing{tp: tp, prop: prop}
	if f, ok := tp.(interface{ ForceFlush(context.Context) error }); ok {
		a.tracing.flush = f.ForceFlush
	}
	return []rpc.ServerOption{rpc.WithTracing(tp, prop)},
		[]rpc.ClientOption{rpc.WithClientTracing(tp, prop)},
		[]tcc.CoordinatorOption{tcc.WithTracerProvider(tp)}
}

// tracingLockOptions returns the options that trace the App's locks and
// elections; none when tracing is off.
func (a *App) tracingLockOptions() []lock.Option {
	if a.tracing == nil {
		return nil
	}
	return []lock.Option{lock.WithTracerProvider(a.tracing.tp)}
}

// TracerProvider returns the App's tracer provider (WithTracerProvider, or
// the one built from the OTEL_* environment), or nil when tracing is off.
// Pass it to what the App does not wire itself, such as
// msg.WithTracing for an outbox and its consumers.
func (a *App) TracerProvider() trace.TracerProvider {
	if a.tracing == nil {
		return nil
	}
	return a.tracing.tp
}

// Propagator returns the propagator the App's calls carry trace context
// with, or nil when tracing is off.
func (a *App) Propagator() propagation.TextMapPropagator {
	if a.tracing == nil {
		return nil
	}
	return a.tracing.prop
}
