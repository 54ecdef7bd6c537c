package concord_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord/lock"
)

// TestLockAdminRoutes holds a lock through the admin route: it needs the
// admin credential, validates the name and the duration, answers once the
// lock is held (the status shows it with the operator as holder, and
// another contender is refused), refuses a second hold, releases on
// request, and releases by itself when the duration has passed.
func TestLockAdminRoutes(t *testing.T) {
	dir := t.TempDir()
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"), concord.WithDataDir(dir),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0))
	_, stop := startApp(t, app)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	admin := adminReady(ctx, t, app)
	token := adminToken(t, dir)
	base := "http://" + admin.String() + concord.LocksPath
	name := "jobs/nightly"
	hold := base + url.PathEscape(name) + "/hold"
	release := base + url.PathEscape(name) + "/release"

	for _, tc := range []struct {
		token, url string
		code       int
	}{
		{"", hold, http.StatusUnauthorized},
		{"wrong", hold, http.StatusUnauthorized},
		{token, base + "a..b/hold", http.StatusBadRequest},
		{token, base + url.PathEscape(strings.Repeat("x", lock.MaxNameLen+1)) + "/hold", http.StatusBadRequest},
		{token, base + "a%20b/hold", http.StatusBadRequest},
		{token, hold + "?for=11m", http.StatusBadRequest},
		{token, hold + "?for=10ms", http.StatusBadRequest},
		{token, hold + "?for=soon", http.StatusBadRequest},
		{token, release, http.StatusNotFound},
	} {
		if code, body := adminCall(t, tc.token, http.MethodPost, tc.url, ""); code != tc.code {
			t.Fatalf("POST %s: %d %v, want %d", tc.url, code, body, tc.code)
		}
	}

	code, body := adminCall(t, token, http.MethodPost, hold+"?for=2s", "")
	if code != http.StatusOK || body["name"] != name || body["token"].(float64) <= 0 || body["held_for_ms"] != 2000.0 ||
		!strings.HasPrefix(body["holder"].(string), "operator admin via ") {
		t.Fatalf("hold: %d %v", code, body)
	}
	held := uint64(body["token"].(float64))
	if _, err := app.Mutex(name).TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock while held for the operator: %v, want ErrLocked", err)
	}
	st, _ := getStatus(t, admin)
	if len(st.Locks.Held) != 1 || st.Locks.Held[0].Name != name || st.Locks.Held[0].Token != held || st.Locks.Held[0].Holder != body["holder"] {
		t.Fatalf("status locks %+v", st.Locks)
	}
	if code, body := adminCall(t, token, http.MethodPost, hold, ""); code != http.StatusConflict {
		t.Fatalf("second hold: %d %v, want 409", code, body)
	}
	if code, body := adminCall(t, token, http.MethodPost, release, ""); code != http.StatusOK {
		t.Fatalf("release: %d %v", code, body)
	}
	mu := app.Mutex(name)
	if _, err := mu.TryLock(ctx); err != nil {
		t.Fatalf("TryLock after release: %v", err)
	}
	if code, body := adminCall(t, token, http.MethodPost, hold, ""); code != http.StatusConflict {
		t.Fatalf("hold of a lock held elsewhere: %d %v, want 409", code, body)
	}
	if err := mu.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	// Held for 1s: released by the App after it.
	if code, body := adminCall(t, token, http.MethodPost, hold+"?for=1s", ""); code != http.StatusOK {
		t.Fatalf("hold for 1s: %d %v", code, body)
	}
	for i := 0; ; i++ {
		_, err := mu.TryLock(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, lock.ErrLocked) || i == 100 {
			t.Fatalf("TryLock %d after a 1s hold: %v", i, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = mu.Unlock(ctx)
}
