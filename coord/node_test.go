package coord_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/internal/clustertest"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/internal/syncbuf"
)

func TestMain(m *testing.M) {
	clustertest.MaybeRunNode() // in a cluster node's child process: serve and exit
	goleak.VerifyTestMain(m,
		// A cluster node stopped while it resets a stream it is catching up
		// on can leave that stream's file store running: nats-server
		// (v2.15.2) creates the stream in a goroutine after it checked that
		// JetStream is not shutting down. TestStopClusterNodeAtAnyMomentOfStart
		// hits it; README "Known issues". Embedded nodes leak nothing (the
		// root package's goleak has no exceptions).
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*fileStore).flushStreamStateLoop"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server/ats.Register.func1"),
	)
}

func quiet() coord.Option { return coord.WithLogger(slog.New(slog.DiscardHandler)) }

func openEmbedded(t *testing.T, dir string, opts ...coord.Option) *coord.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	n, err := coord.Open(ctx, append([]coord.Option{coord.WithDataDir(dir), quiet()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestEmbeddedKeepsStateAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	n := openEmbedded(t, dir)
	if n.Mode() != coord.ModeEmbedded || n.ClientURL() != "" || n.Replicas() != 1 {
		t.Fatalf("mode %v url %q replicas %d", n.Mode(), n.ClientURL(), n.Replicas())
	}
	kv, err := n.JetStream().KeyValue(t.Context(), coord.BucketConfig)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Put(t.Context(), "greeting", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil { // idempotent
		t.Fatal(err)
	}

	n = openEmbedded(t, dir)
	defer n.Close()
	kv, err = n.JetStream().KeyValue(t.Context(), coord.BucketConfig)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(t.Context(), "greeting")
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Value()) != "hello" || e.Revision() != rev {
		t.Fatalf("after restart: %q rev %d, want hello rev %d", e.Value(), e.Revision(), rev)
	}
	st, err := n.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode != "embedded" || st.MetaLeader != "concord" || len(st.Buckets) != 8 {
		t.Fatalf("status %+v", st)
	}
	for _, b := range st.Buckets {
		if b.Replicas != 1 {
			t.Errorf("%s has %d replicas, want 1", b.Name, b.Replicas)
		}
	}
}

func TestDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	n := openEmbedded(t, dir)
	defer n.Close()
	_, err := coord.Open(t.Context(), coord.WithDataDir(dir), quiet())
	if !errors.Is(err, coord.ErrDataDirInUse) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second Open on %s: %v, want ErrDataDirInUse naming the directory", dir, err)
	}
}

func TestBadConfig(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	unwritable := filepath.Join(t.TempDir(), "ro")
	if err := os.MkdirAll(unwritable, 0o500); err != nil {
		t.Fatal(err)
	}
	fileNotDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(fileNotDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	standalone := openEmbedded(t, t.TempDir(), coord.WithListen("127.0.0.1:-1"), coord.WithListenAuth("concord", "s3cret"))
	defer standalone.Close()

	for _, tc := range []struct {
		name string
		opts []coord.Option
		want string
	}{
		{"port in use", []coord.Option{coord.WithDataDir(t.TempDir()), coord.WithListen(busy.Addr().String()), nodetest.ListenAuth()}, "address already in use"},
		{"data dir is a file", []coord.Option{coord.WithDataDir(fileNotDir)}, "data directory"},
		{"bad listen address", []coord.Option{coord.WithDataDir(t.TempDir()), coord.WithListen("nope")}, "listen address"},
		{"bad node name", []coord.Option{coord.WithDataDir(t.TempDir()), coord.WithName("a b")}, "node name"},
		{"cluster without listen", []coord.Option{coord.WithDataDir(t.TempDir()), coord.WithCluster(coord.Cluster{})}, "Cluster.Listen"},
		{"cluster without route credentials", []coord.Option{coord.WithDataDir(t.TempDir()), coord.WithCluster(coord.Cluster{Listen: "127.0.0.1:-1"})}, "cluster routes need credentials"},
		{"listener without client credentials", []coord.Option{coord.WithDataDir(t.TempDir()), coord.WithListen("127.0.0.1:-1")}, "needs client credentials"},
		{"client without URL", []coord.Option{coord.WithClient(nil, nodetest.ClientAuth())}, "server URL"},
		{"client, nothing listening", []coord.Option{coord.WithClient([]string{"nats://" + busy.Addr().String()}, nodetest.ClientAuth())}, "connect to"},
		{"client, wrong credentials", []coord.Option{coord.WithClient([]string{standalone.ClientURL()}, coord.ClientAuth{Username: "concord", Password: "wrong"})}, "Authorization Violation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
			defer cancel()
			start := time.Now()
			n, err := coord.Open(ctx, append(tc.opts, quiet())...)
			if err == nil {
				n.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("Open took %v to fail; it should fail fast", time.Since(start))
			}
		})
	}
	// A data directory that cannot be created fails fast, with the cause,
	// for root too (CI runs as root, which ignores permissions).
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := coord.Open(t.Context(), coord.WithDataDir(filepath.Join(file, "data")), quiet()); err == nil {
		n.Close()
		t.Fatal("Open under a regular file succeeded")
	} else if !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("data dir under a regular file: %v, want the cause", err)
	}
	if os.Geteuid() != 0 { // root ignores directory permissions
		_, err := coord.Open(t.Context(), coord.WithDataDir(filepath.Join(unwritable, "data")), quiet())
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("unwritable dir: %v", err)
		}
	}
}

func TestClientMode(t *testing.T) {
	server := openEmbedded(t, t.TempDir(), coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth(), coord.WithName("standalone"))
	defer server.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	client, err := coord.Open(ctx, coord.WithClient([]string{server.ClientURL()}, nodetest.ClientAuth()), coord.WithName("app"), quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if client.Mode() != coord.ModeClient || client.ClientURL() != "" {
		t.Fatalf("mode %v", client.Mode())
	}
	kv, err := client.JetStream().KeyValue(ctx, coord.BucketConfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("from client")); err != nil {
		t.Fatal(err)
	}
	skv, err := server.JetStream().KeyValue(ctx, coord.BucketConfig)
	if err != nil {
		t.Fatal(err)
	}
	e, err := skv.Get(ctx, "k")
	if err != nil || string(e.Value()) != "from client" {
		t.Fatalf("server sees %v %v", e, err)
	}
	st, err := client.Status(ctx)
	if err != nil || st.Mode != "client" || len(st.Buckets) != 8 {
		t.Fatalf("client status %+v %v", st, err)
	}
}

// TestInsecureOptOutsAreLogged: an opt-out of authentication says so at
// Warn on every Open; a node with credentials says nothing of the kind.
func TestInsecureOptOutsAreLogged(t *testing.T) {
	var open, closed syncbuf.Buffer
	n := nodetest.Open(t, coord.WithListen("127.0.0.1:-1"), coord.WithInsecureListenNoAuth(),
		coord.WithLogger(slog.New(slog.NewTextHandler(&open, nil))))
	_ = n.Close()
	if !strings.Contains(open.String(), "level=WARN") || !strings.Contains(open.String(), "INSECURE") || !strings.Contains(open.String(), "WithInsecureListenNoAuth") {
		t.Fatalf("open listener, log:\n%s", open.String())
	}
	n = nodetest.Open(t, coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth(),
		coord.WithLogger(slog.New(slog.NewTextHandler(&closed, nil))))
	_ = n.Close()
	if strings.Contains(closed.String(), "INSECURE") {
		t.Fatalf("a listener with credentials logged:\n%s", closed.String())
	}
}
