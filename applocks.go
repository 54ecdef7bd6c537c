package concord

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/concordrpc/concord/coord/lock"
)

// LocksPath is the prefix of an App's admin routes for holding a lock by
// hand, for `concord lock` (an operator's handle: to see a lock in the
// status and the console, or to keep a job off a resource for a while):
//
//	POST /concord/locks/{name}/hold?for=60s   take the App's Mutex for name and hold it
//	POST /concord/locks/{name}/release        release a lock held that way
//
// Like the config routes (ConfigPath) they need an admin credential sent
// as "Authorization: Bearer <token>", else 401. A name holding "/" is sent
// path-escaped. hold answers once the lock is held, with JSON {"name",
// "token", "holder", "held_for_ms"}: the App keeps holding it (its lease
// refreshed as any Mutex's) until the duration has passed, release is
// called, or the App stops; the request does not stay open. It does not
// wait for another holder: a lock held elsewhere answers 409 at once.
// for is at least 1s and at most MaxLockHold; without it, 60s. At most
// maxAdminHolds locks are held this way at a time per App (then 429).
// Errors are JSON {"error": ...}: 400 for an invalid name or duration, 404
// from release for a lock this App does not hold through hold, 409, 429,
// and 503 while coordination is unavailable.
const LocksPath = "/concord/locks/"

// MaxLockHold bounds how long the LocksPath hold route holds a lock.
const MaxLockHold = 10 * time.Minute

// defaultLockHold is how long hold holds a lock without ?for.
const defaultLockHold = time.Minute

// maxAdminHolds bounds the locks one App holds through the hold route.
const maxAdminHolds = 16

// adminHold is a lock the App holds for an operator.
type adminHold struct {
	mu    *lock.Mutex
	timer *time.Timer
}

// adminHolds are the locks an App holds through the hold route.
type adminHolds struct {
	mu      sync.Mutex
	held    map[string]*adminHold
	stopped bool
	taking  sync.WaitGroup // holds being taken: stop waits for them
}

// processName names this process in lock holders and the TCC coordinator:
// its host and process ID.
func processName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", cmp.Or(host, "app"), os.Getpid())
}

// mountLockAdmin adds the LocksPath routes behind the admin credentials
// (the file mountConfigAdmin made sure of), and releases what they hold
// when the App stops.
func (a *App) mountLockAdmin(mux *http.ServeMux) {
	h := &adminHolds{held: map[string]*adminHold{}}
	a.onStop(h.stop)
	guard := adminGuard(a.adminCredsPath())
	mux.Handle("POST "+LocksPath+"{name}/hold", guard(func(w http.ResponseWriter, r *http.Request, who string) {
		a.serveLockHold(w, r, who, h)
	}))
	mux.Handle("POST "+LocksPath+"{name}/release", guard(func(w http.ResponseWriter, r *http.Request, _ string) {
		h.serveRelease(w, r)
	}))
}

func (a *App) serveLockHold(w http.ResponseWriter, r *http.Request, who string, h *adminHolds) {
	name := r.PathValue("name")
	if err := lock.CheckName(name); err != nil {
		writeAdminJSON(w, http.StatusBadRequest, &AdminError{Error: err.Error()})
		return
	}
	d := defaultLockHold
	if q := r.URL.Query().Get("for"); q != "" {
		var err error
		if d, err = time.ParseDuration(q); err != nil || d < time.Second || d > MaxLockHold {
			writeAdminJSON(w, http.StatusBadRequest, &AdminError{Error: fmt.Sprintf("for=%.40q: want a duration from 1s to %v", q, MaxLockHold)})
			return
		}
	}
	h.mu.Lock()
	switch {
	case h.stopped:
		h.mu.Unlock()
		writeAdminJSON(w, http.StatusServiceUnavailable, &AdminError{Error: "the app is stopping"})
		return
	case h.held[name] != nil:
		h.mu.Unlock()
		writeAdminJSON(w, http.StatusConflict, &AdminError{Error: fmt.Sprintf("%s is already held by this app through %s; release it first", name, LocksPath)})
		return
	case len(h.held) >= maxAdminHolds:
		h.mu.Unlock()
		writeAdminJSON(w, http.StatusTooManyRequests, &AdminError{Error: fmt.Sprintf("this app already holds %d locks for operators; release one first", maxAdminHolds)})
		return
	}
	holder := "operator " + who + " via " + processName()
	hold := &adminHold{mu: a.Mutex(name, lock.WithHolder(holder))}
	h.held[name] = hold // reserved while the lock is taken
	h.taking.Add(1)     // under mu, before stop can see stopped and wait
	h.mu.Unlock()
	defer h.taking.Done()

	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	token, err := hold.mu.TryLock(ctx)
	if err != nil {
		h.mu.Lock()
		delete(h.held, name)
		h.mu.Unlock()
		code := http.StatusServiceUnavailable
		switch {
		case errors.Is(err, lock.ErrLocked):
			code = http.StatusConflict
		case errors.Is(err, lock.ErrInvalidName):
			code = http.StatusBadRequest
		}
		writeAdminJSON(w, code, &AdminError{Error: fmt.Sprintf("lock %s: %v", name, err)})
		return
	}
	h.mu.Lock()
	hold.timer = time.AfterFunc(d, func() { h.release(name, hold) })
	stopped := h.stopped
	h.mu.Unlock()
	if stopped {
		// stop waits for this release (taking), so the node is still open.
		_ = h.release(name, hold)
		writeAdminJSON(w, http.StatusServiceUnavailable, &AdminError{Error: "the app is stopping; the lock was given back"})
		return
	}
	a.cfg.logger.Info("concord: lock held for an operator", "lock", name, "token", token, "for", d, "operator", who)
	writeAdminJSON(w, http.StatusOK, &LockHold{Name: name, Token: token, Holder: holder, HeldForMillis: d.Milliseconds()})
}

func (h *adminHolds) serveRelease(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := lock.CheckName(name); err != nil {
		writeAdminJSON(w, http.StatusBadRequest, &AdminError{Error: err.Error()})
		return
	}
	h.mu.Lock()
	hold := h.held[name]
	taken := hold != nil && hold.timer != nil // nil while the hold is being taken
	h.mu.Unlock()
	if !taken {
		writeAdminJSON(w, http.StatusNotFound, &AdminError{Error: fmt.Sprintf("this app does not hold %s through %s", name, LocksPath)})
		return
	}
	if err := h.release(name, hold); err != nil && !errors.Is(err, lock.ErrNotHeld) {
		writeAdminJSON(w, http.StatusServiceUnavailable, &AdminError{Error: fmt.Sprintf("release %s: %v (the lock expires within its TTL)", name, err)})
		return
	}
	writeAdminJSON(w, http.StatusOK, map[string]string{"name": name, "released": "true"})
}

// release gives hold back, once, and forgets it.
func (h *adminHolds) release(name string, hold *adminHold) error {
	h.mu.Lock()
	if h.held[name] != hold {
		h.mu.Unlock()
		return lock.ErrNotHeld
	}
	delete(h.held, name)
	if hold.timer != nil {
		hold.timer.Stop()
	}
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return hold.mu.Unlock(ctx)
}

// stop releases every lock held for operators: the App is stopping.
func (h *adminHolds) stop() {
	h.mu.Lock()
	h.stopped = true
	held := make(map[string]*adminHold, len(h.held))
	for name, hold := range h.held {
		if hold.timer != nil { // a hold still being taken releases itself
			held[name] = hold
		}
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for name, hold := range held {
		wg.Go(func() { _ = h.release(name, hold) })
	}
	wg.Wait()
	h.taking.Wait() // holds being taken see stopped and give their lock back
}
