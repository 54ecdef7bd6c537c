package concord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concordrpc/concord/coord"
)

// PauseCheckAfter is how long a function-mode App may go without a call
// before its next call first checks the coordination connection (see
// RunFunction): a function's process is frozen between invocations, and
// a freeze can outlive the connection.
const PauseCheckAfter = time.Second

// pauseCheckTimeout bounds that check; the call's own deadline may end it
// sooner.
const pauseCheckTimeout = 2 * time.Second

// errNoLocalInFunction is Local's error in function mode.
var errNoLocalInFunction = fmt.Errorf("%w: an App in function mode has no local store (use the SQL stores for barriers and outboxes)", ErrNotReady)

// functionState is what RunFunction keeps.
type functionState struct {
	on      atomic.Bool   // RunFunction was called
	once    sync.Once     // closes wanted
	wanted  chan struct{} // closed when something first needs coordination
	born    time.Time     // the base of lastEnd (monotonic)
	lastEnd atomic.Int64  // time since born at the end of the last call; 0 before the first
	// lastWall is the wall-clock time (Unix nanoseconds) at the end of the
	// last call: the monotonic clock of a paused virtual machine may stand
	// still while the wall clock goes on.
	lastWall atomic.Int64
}

// want records that something needs coordination: in function mode, the
// connection is opened then.
func (f *functionState) want() { f.once.Do(func() { close(f.wanted) }) }

// RunFunction runs the App in function mode, for a platform that calls
// the App's handler once per invocation and freezes the process in
// between (AWS Lambda through package lambdafn):
//
//	err := app.RunFunction(ctx, func(h http.Handler) error {
//		lambda.Start(lambdafn.New(h)) // never returns
//		return nil
//	})
//
// RunFunction calls serve with the App's RPC handler, in a goroutine, and
// returns when ctx ends or serve returns (with serve's error), after
// stopping the App as Run does. In function mode:
//
//   - No listener is opened: neither the RPC port nor the admin listener
//     (no status, no /metrics endpoint, no config routes).
//   - Coordination is client mode only (WithCoordOptions with
//     coord.WithClient) and is connected lazily, by the first call that
//     needs it (a lock, a cluster-scoped limit, discovery, TCC); an App
//     whose calls never need it never connects. Without client-mode
//     options, whatever needs coordination fails with ErrNotReady.
//   - The App registers no instance in the registry (a frozen function
//     cannot answer calls from other services) and runs no TCC recovery
//     (WithoutTCCRecovery is implied; a long-running App does it).
//   - There is no local store: Local and Guard fail with ErrNotReady, so
//     fenced methods answer unavailable, and WithTCCLocalBarrier is an
//     error: keep barriers and outboxes in the SQL stores.
//   - Each call that comes more than PauseCheckAfter after the previous one
//     (by the monotonic or the wall clock: a frozen virtual machine's
//     monotonic clock may stand still) first makes sure the coordination
//     connection works (coord.Node.Ping, bounded by the call's deadline and
//     two seconds), reconnecting it if the process was frozen for longer
//     than the server kept it. Leases do not survive a freeze past their
//     deadline: a lock.Mutex's Valid tells a thawed handler its lock is
//     gone before it writes, whatever the connection's state (it compares
//     both clocks too); Done may close only a moment later.
//   - When the App traces (WithTracerProvider with a provider that has
//     ForceFlush, as the SDK's has, or one built from the OTEL_*
//     environment), each call's spans are exported before the call
//     returns, for at most a second and within the call's deadline: a
//     frozen process exports nothing.
//   - serve may outlive RunFunction: a host such as lambda.Start never
//     returns. Calls that reach the handler after RunFunction returned find
//     the App stopped (what needs coordination fails with ErrNotReady).
//
// RunFunction and Run are exclusive: either may be called once.
func (a *App) RunFunction(ctx context.Context, serve func(http.Handler) error) error {
	err := errors.New("concord: Run or RunFunction called twice")
	a.runOnce.Do(func() { err = a.runFunction(ctx, serve) })
	return err
}

func (a *App) runFunction(ctx context.Context, serve func(http.Handler) error) error {
	defer a.update(func() { a.gen, a.local, a.err = nil, nil, fmt.Errorf("%w: %w", ErrNotReady, errStopped) })
	a.fn.on.Store(true)
	if a.barrier != nil {
		return errors.New("concord: function mode has no local store for WithTCCLocalBarrier's barriers: use tcc's SQL barrier")
	}
	h, err := a.server.ServeHandler()
	if err != nil {
		return err
	}
	if mode := coord.ModeOf(a.cfg.coordOpts...); mode != coord.ModeClient {
		a.update(func() {
			a.err = fmt.Errorf("%w: function mode connects to coordination in client mode only (WithCoordOptions(coord.WithClient(...))), not %s mode", ErrNotReady, mode)
		})
	}
	a.server.SetReady(readinessGate)

	coordCtx, stopCoord := context.WithCancel(ctx)
	defer stopCoord()
	coordinated := make(chan error, 1)
	go func() {
		select {
		case <-a.fn.wanted:
			if coord.ModeOf(a.cfg.coordOpts...) == coord.ModeClient {
				coordinated <- a.keepNode(coordCtx, nil)
				return
			}
		case <-coordCtx.Done():
		}
		coordinated <- nil
	}()
	served := make(chan error, 1)
	go func() { served <- serve(a.functionHandler(h)) }()

	var runErr error
	select {
	case runErr = <-served:
	case <-ctx.Done():
	}
	a.server.SetNotReady(stoppingGate, "shutting down")
	stopCoord()
	if err := <-coordinated; err != nil {
		a.cfg.logger.Error("concord: coordination failed", slog.Any("error", err))
	}
	a.stop()
	_ = a.tcc.Close()
	a.runStopHooks()
	return errors.Join(runErr, a.closeState())
}

// functionHandler wraps h with the check after a pause.
func (a *App) functionHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.afterPause(r.Context())
		defer func() {
			a.fn.lastWall.Store(time.Now().UnixNano())
			a.fn.lastEnd.Store(int64(max(time.Since(a.fn.born), 1)))
		}()
		h.ServeHTTP(w, r)
		a.flushSpans(r.Context())
	})
}

// afterPause makes sure the coordination connection works before a call
// that comes more than PauseCheckAfter after the previous one. A check
// that fails is logged; the call runs anyway, and what needs coordination
// in it fails or waits as usual.
func (a *App) afterPause(ctx context.Context) {
	last := a.fn.lastEnd.Load()
	if last == 0 {
		return
	}
	gap := max(time.Since(a.fn.born)-time.Duration(last), time.Duration(time.Now().UnixNano()-a.fn.lastWall.Load()))
	if gap < PauseCheckAfter {
		return
	}
	a.mu.Lock()
	g := a.gen
	a.mu.Unlock()
	if g == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, pauseCheckTimeout)
	defer cancel()
	if err := g.node.Ping(ctx); err != nil {
		a.cfg.logger.Warn("concord: coordination connection not confirmed after a pause", slog.Any("error", err))
		return
	}
	// Connected with a round trip: what needs the node need not fail fast
	// on a loss the connection watcher has not caught up with yet.
	a.update(func() {
		if a.gen == g {
			a.down = nil
		}
	})
}
