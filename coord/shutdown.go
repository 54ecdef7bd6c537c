package coord

import (
	"bytes"
	"runtime"
	"time"
)

// Stopping an embedded nats-server (v2.15.2) right after Server.Start can
// crash the whole process. Start spawns the JetStream API workers
// (processJSAPIRoutedRequests) but does not wait for them to run; each
// worker reads the server's JetStream pointer once, when it first runs.
// Shutdown sets that pointer to nil (shutdownJetStream) before it closes
// the quit channel the workers select on. A worker that is first scheduled
// inside that window holds a nil pointer, and if a request is queued (the
// server sends itself JetStream API requests, so there need be no client)
// it dereferences nil and panics in a goroutine no caller can recover. On a
// loaded 2-core machine a stop within a few milliseconds of start hit this
// within seconds.
//
// So Close never calls Shutdown while a goroutine that nats-server started
// has not yet begun to run. It looks for them in a dump of all goroutines:
// one that has never run shows server.(*Server).startGoRoutine.func1 as its
// only frame. A worker that has run but is blocked on the server lock
// before reading the pointer (wait reason sync.RWMutex.RLock under
// processJSAPIRoutedRequests) is waited for too. The wait is bounded by
// settleTimeout: past it, Close shuts down anyway (no goroutine can stay
// runnable that long but on a stalled machine).
//
// The same dump-based check also sees goroutines of other servers in the
// process (tests run several); it then only waits longer, never less.
// TestStopEmbeddedAtAnyMomentOfStart and the root package's
// TestStopAtAnyMomentOfStart exercise it; without this wait they crash or
// leak on a loaded machine.

// settleTimeout bounds how long Close waits for nats-server's goroutines
// to start before it shuts the server down anyway.
const settleTimeout = 2 * time.Second

var (
	unstartedFrame = []byte("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1()\n")
	workerFrame    = []byte("server.(*Server).processJSAPIRoutedRequests(")
	rlockState     = []byte("[sync.RWMutex.RLock")
)

// waitServerGoroutinesStarted returns once no nats-server goroutine is
// waiting for its first run (see above), or when timeout has passed. It
// reports whether they all started.
func waitServerGoroutinesStarted(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1<<20)
	for pause := 50 * time.Microsecond; ; pause = min(2*pause, 5*time.Millisecond) {
		n := runtime.Stack(buf, true)
		for n == len(buf) && len(buf) < 64<<20 {
			buf = make([]byte, 2*len(buf))
			n = runtime.Stack(buf, true)
		}
		if !serverGoroutinePending(buf[:n]) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		// Let the pending goroutines run.
		runtime.Gosched()
		time.Sleep(pause)
	}
}

// serverGoroutinePending reports whether a goroutine dump shows a
// nats-server goroutine that has not run yet, or an API worker blocked
// before it read the server's JetStream pointer.
func serverGoroutinePending(dump []byte) bool {
	for g := range bytes.SplitSeq(dump, []byte("\n\ngoroutine ")) {
		header, frames, ok := bytes.Cut(g, []byte("\n"))
		if !ok {
			continue
		}
		if bytes.HasPrefix(frames, unstartedFrame) {
			return true
		}
		if bytes.Contains(header, rlockState) && bytes.Contains(frames, workerFrame) {
			return true
		}
	}
	return false
}
