package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/internal/syncbuf"
)

// asConcordEnv makes the test binary run as `concord` (main) instead of
// running tests, so that a test can start real node processes, each with
// an environment of its own.
const asConcordEnv = "CONCORD_TEST_RUN_AS_CONCORD"

func TestMain(m *testing.M) {
	if os.Getenv(asConcordEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestStatefulSetPeers(t *testing.T) {
	t.Parallel()
	const k8s = "{name}.concord.prod.svc.cluster.local:6222"
	for _, tc := range []struct {
		name, pod, template string
		replicas            int
		want                stsPeers
		err                 string
	}{
		{name: "first of three", pod: "concord-0", replicas: 3, template: k8s, want: stsPeers{
			ordinal: 0, self: "concord-0.concord.prod.svc.cluster.local:6222", listen: ":6222",
			peers: []string{"concord-1.concord.prod.svc.cluster.local:6222", "concord-2.concord.prod.svc.cluster.local:6222"},
		}},
		{name: "dashes in the StatefulSet name", pod: "my-coord-set-2", replicas: 3, template: "{name}.h:7000", want: stsPeers{
			ordinal: 2, self: "my-coord-set-2.h:7000", listen: ":7000", peers: []string{"my-coord-set-0.h:7000", "my-coord-set-1.h:7000"},
		}},
		{name: "ports by ordinal on one host", pod: "n-1", replicas: 3, template: "localhost:622{ordinal}", want: stsPeers{
			ordinal: 1, self: "localhost:6221", listen: ":6221", peers: []string{"localhost:6220", "localhost:6222"},
		}},
		{name: "no ordinal", pod: "concord", replicas: 3, template: k8s, err: "not <statefulset>-<ordinal>"},
		{name: "not a number", pod: "concord-x", replicas: 3, template: k8s, err: "not <statefulset>-<ordinal>"},
		{name: "leading zero", pod: "concord-01", replicas: 3, template: k8s, err: "not <statefulset>-<ordinal>"},
		{name: "empty StatefulSet name", pod: "-1", replicas: 3, template: k8s, err: "not <statefulset>-<ordinal>"},
		{name: "no replica count", pod: "concord-0", template: k8s, err: "CONCORD_REPLICAS"},
		{name: "scaled beyond the count", pod: "concord-3", replicas: 3, template: k8s, err: "not below -replicas 3"},
		{name: "same address for all", pod: "concord-0", replicas: 3, template: "concord:6222", err: "no {name} or {ordinal}"},
		{name: "no port", pod: "concord-0", replicas: 3, template: "{name}.concord", err: "not host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := statefulSetPeers(tc.pod, tc.replicas, tc.template)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestNodeProbesWhileWaitingForPeers: a cluster node whose peers are not
// up is alive (/healthz 200) but not ready (/readyz and the status 503,
// saying why), so that Kubernetes neither kills it nor routes to it.
func TestNodeProbesWhileWaitingForPeers(t *testing.T) {
	t.Setenv("CONCORD_ROUTE_PASSWORD", "route-secret")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	httpAddr := freeAddr(t)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"node", "-data", t.TempDir(), "-name", "lonely", "-listen", "127.0.0.1:-1", "-password", "p",
			"-http", httpAddr, "-cluster", freeAddr(t), "-peers", freeAddr(t) + "," + freeAddr(t)}, io.Discard, io.Discard)
	}()
	want := map[string]int{healthPath: 200, readyPath: 503, statusPath: 503}
	for path, code := range want {
		var got int
		var body string
		for range 200 {
			if got, body = get(t, "http://"+httpAddr+path); got != 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got != code {
			t.Errorf("GET %s: %d %q, want %d", path, got, body, code)
		}
		if code == 503 && !strings.Contains(body, "quorum") {
			t.Errorf("GET %s: %q does not say the node waits for a quorum", path, body)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("node stopped while waiting for peers: %v, want nil", err)
	}
}

// TestStatefulSetCluster: three `concord node` processes started as the
// StatefulSet in deploy/kubernetes starts them (the same flags, and
// POD_NAME, CONCORD_REPLICAS, CONCORD_PEER_TEMPLATE and the credentials in
// the environment) form a three-node cluster. Only what one host cannot
// share differs by process: the data directory (a volume per pod in
// Kubernetes) and the HTTP port; the peer template names loopback
// ("localhost", which the hosts file resolves) with a route port per
// ordinal, where Kubernetes has a DNS name per pod.
func TestStatefulSetCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node cluster")
	}
	prefix := routePortPrefix(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	type proc struct {
		cmd   *exec.Cmd
		http  string
		ready chan string
	}
	var procs []*proc
	for i := range 3 {
		p := &proc{http: freeAddr(t), ready: make(chan string, 1)}
		p.cmd = exec.CommandContext(ctx, os.Args[0], "node", "-peers-from-statefulset",
			"-cluster", fmt.Sprintf("127.0.0.1:%d%d", prefix, i), // a pod listens on all interfaces (the default)
			"-listen", "127.0.0.1:-1", "-data", filepath.Join(t.TempDir(), "data"), "-http", p.http, "-log-format", "json")
		p.cmd.Env = append(os.Environ(), asConcordEnv+"=1",
			fmt.Sprintf("POD_NAME=concord-%d", i), "POD_NAMESPACE=default",
			"CONCORD_REPLICAS=3", fmt.Sprintf("CONCORD_PEER_TEMPLATE=localhost:%d{ordinal}", prefix),
			"CONCORD_ROUTE_PASSWORD=route-secret", "CONCORD_NATS_PASSWORD=client-secret")
		p.cmd.Cancel = func() error { return p.cmd.Process.Signal(syscall.SIGTERM) }
		p.cmd.WaitDelay = 20 * time.Second
		p.cmd.Stderr = io.Discard
		out, err := p.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if strings.Contains(sc.Text(), " ready: ") {
					p.ready <- sc.Text()
				}
			}
		}()
		procs = append(procs, p)
	}
	defer func() {
		for _, p := range procs {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
		for i, p := range procs {
			if err := p.cmd.Wait(); err != nil {
				t.Errorf("concord-%d exited with %v after SIGTERM", i, err)
			}
		}
	}()
	for i, p := range procs {
		select {
		case line := <-p.ready:
			if want := fmt.Sprintf("concord node concord-%d ready: mode=cluster", i); !strings.HasPrefix(line, want) || !strings.Contains(line, "replicas=3") {
				t.Fatalf("concord-%d printed %q, want %q… replicas=3", i, line, want)
			}
		case <-ctx.Done():
			t.Fatalf("concord-%d not ready: %v", i, ctx.Err())
		}
		if code, body := get(t, "http://"+p.http+readyPath); code != 200 {
			t.Fatalf("concord-%d %s: %d %s", i, readyPath, code, body)
		}
	}
	// Every node sees the same three-node meta group, and R3 buckets.
	for i, p := range procs {
		var st coord.Status
		for {
			code, body := get(t, "http://"+p.http+statusPath)
			if code == 200 {
				if err := json.Unmarshal([]byte(body), &st); err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, peer := range st.Peers {
					names = append(names, peer.Name)
				}
				if st.MetaLeader != "" && slices.Equal(names, []string{"concord-0", "concord-1", "concord-2"}) {
					break
				}
			}
			if ctx.Err() != nil {
				t.Fatalf("concord-%d status: %d %s", i, code, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if st.Mode != "cluster" || st.Node != fmt.Sprintf("concord-%d", i) {
			t.Fatalf("concord-%d status: mode %q node %q", i, st.Mode, st.Node)
		}
		for _, b := range st.Buckets {
			if b.Unknown == "" && b.Replicas != 3 {
				t.Errorf("concord-%d: %s has %d replicas, want 3", i, b.Name, b.Replicas)
			}
		}
	}
}

// routePortPrefix returns a number P such that the loopback ports P0, P1
// and P2 are free: the route ports of three nodes whose peer template is
// "localhost:P{ordinal}".
func routePortPrefix(t *testing.T) int {
	t.Helper()
	for range 100 {
		p := 2000 + rand.IntN(4000) // ports 20000 to 59999
		var lns []net.Listener
		for i := range 3 {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d%d", p, i))
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if len(lns) == 3 {
			return p
		}
	}
	t.Fatal("no three free loopback ports")
	return 0
}

// get returns the status code and body of a GET, or 0 if it failed.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestNodeFlags: -log-format json writes one JSON object per log line, and
// the StatefulSet flags fail with a usage error that names the cause.
func TestNodeFlags(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdout, stderr := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"node", "-data", t.TempDir(), "-listen", "127.0.0.1:-1", "-password", "p", "-http", "",
			"-log-format", "json", "-log-level", "info"}, stdout, stderr)
	}()
	for !strings.Contains(stdout.String(), " ready: ") {
		select {
		case err := <-done:
			t.Fatalf("node: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec["msg"] == nil || rec["level"] == nil {
			t.Errorf("log line is not a JSON record (%v): %q", err, l)
		}
	}
	if len(lines) < 2 {
		t.Errorf("%d log lines at level info, want the NATS server's start at least: %q", len(lines), stderr.String())
	}

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"bad log format", nil, []string{"-log-format", "yaml"}, "want text or json"},
		{"peers twice", nil, []string{"-peers-from-statefulset", "-peers", "a:1"}, "exclude each other"},
		{"not a StatefulSet pod", []string{"POD_NAME=web"}, []string{"-peers-from-statefulset", "-replicas", "3", "-peer-template", "{name}.s:6222"}, "not <statefulset>-<ordinal>"},
		{"no template", []string{"POD_NAME=concord-0", "CONCORD_REPLICAS=3"}, []string{"-peers-from-statefulset"}, "CONCORD_PEER_TEMPLATE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("POD_NAME", "")
			t.Setenv("CONCORD_REPLICAS", "")
			t.Setenv("CONCORD_PEER_TEMPLATE", "")
			for _, kv := range tc.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			err := run(t.Context(), append([]string{"node", "-data", t.TempDir(), "-http", ""}, tc.args...), io.Discard, io.Discard)
			var uerr usageError
			if !errors.As(err, &uerr) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want a usage error containing %q", err, tc.want)
			}
		})
	}
}
