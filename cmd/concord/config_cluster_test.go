package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/concordrpc/concord"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/internal/clustertest"
)

// TestConfigSetReachesEveryClusterInstance: three Apps, each embedding one
// node of a three-node cluster, watch the config "greeter"; values set
// with `concord config set` through the first App's admin listener reach
// the watchers of all three, every version, in order.
func TestConfigSetReachesEveryClusterInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node cluster")
	}
	c := clustertest.New(t, 3)
	type instance struct {
		app    *concord.App
		admin  string
		mu     sync.Mutex
		seen   []string // templates in the order the watcher got them
		cancel context.CancelFunc
		done   chan error
		wait   func(context.Context) error // the handle's first load
	}
	// One credentials file for the three Apps, as an operator would deploy.
	creds := filepath.Join(t.TempDir(), "ops.creds")
	if err := os.WriteFile(creds, []byte("ops 0123456789abcdef0123456789abcdef-ops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var insts []*instance
	for _, n := range c.Nodes {
		app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"), concord.WithDataDir(n.Dir+"-app"), concord.WithAdminCredentials(creds),
			concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0),
			concord.WithCoordOptions(c.InProcess(n)...))
		h := concord.Config(app, "greeter", &greeterv1.GreeterConfig{Template: "Hello, {name}!"})
		ctx, cancel := context.WithCancel(context.Background())
		in := &instance{app: app, cancel: cancel, done: make(chan error, 1), wait: h.Wait}
		go func() { in.done <- app.Run(ctx) }()
		updates := h.Watch(ctx)
		go func() {
			for u := range updates {
				if u.Version == 0 {
					continue // the default
				}
				in.mu.Lock()
				in.seen = append(in.seen, u.Value.GetTemplate())
				in.mu.Unlock()
			}
		}()
		insts = append(insts, in)
	}
	defer func() {
		for _, in := range insts {
			in.cancel()
			if err := <-in.done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, in := range insts {
		if _, err := in.app.Node(ctx); err != nil {
			t.Fatal(err)
		}
		admin, err := in.app.AdminAddr(ctx)
		if err != nil {
			t.Fatal(err)
		}
		in.admin = "http://" + admin.String()
		if err := in.wait(ctx); err != nil {
			t.Fatal(err)
		}
	}

	var want []string
	for i := range 12 {
		tpl := fmt.Sprintf("Hi #%d, {name}!", i)
		want = append(want, tpl)
		args := []string{"config", "set", "-addr", insts[0].admin, "-creds", creds, "greeter", fmt.Sprintf(`{"template":%q}`, tpl)}
		if err := run(ctx, args, io.Discard, io.Discard); err != nil {
			t.Fatalf("config set %d: %v", i, err)
		}
	}
	// An invalid value is refused on any instance and reaches no watcher.
	if err := run(ctx, []string{"config", "set", "-addr", insts[2].admin, "-creds", creds, "greeter", `{"template":"no name"}`}, io.Discard, io.Discard); err == nil {
		t.Fatal("an invalid template was accepted")
	}
	deadline := time.Now().Add(30 * time.Second)
	for i, in := range insts {
		for {
			in.mu.Lock()
			seen := append([]string(nil), in.seen...)
			in.mu.Unlock()
			if len(seen) >= len(want) || time.Now().After(deadline) {
				if fmt.Sprint(seen) != fmt.Sprint(want) {
					t.Fatalf("instance %d saw %q, want every version in order: %q", i+1, seen, want)
				}
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
