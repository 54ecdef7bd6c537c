package lambdafn_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/aws/aws-lambda-go/lambda"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/coord/registry"
	"github.com/concordrpc/concord/internal/nodetest"
	concordtestv1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1"
	"github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1/concordtestv1concord"
	"github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1/concordtestv1connect"
	"github.com/concordrpc/concord/lambdafn"
)

// freezeTTL is the lease of the function's lock in TestAppFunctionFreeze.
const freezeTTL = 2 * time.Second

// runAppFunction runs an App in function mode under the real aws-lambda-go
// runtime loop, in the child process TestAppFunctionFreeze started: client
// mode against FN_NATS_URL, data directory FN_DATA. It never returns.
func runAppFunction() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	app := concord.New(concord.WithLogger(logger), concord.WithDataDir(os.Getenv("FN_DATA")),
		concord.WithCoordOptions(coord.WithClient([]string{os.Getenv("FN_NATS_URL")}, nodetest.ClientAuth()),
			coord.WithName("function"), nodetest.Quiet()))
	concordtestv1concord.RegisterTestService(app, &lockService{app: app, mu: app.Mutex("freeze", lock.WithTTL(freezeTTL))})
	err := app.RunFunction(context.Background(), func(h http.Handler) error {
		lambda.Start(lambdafn.New(h, lambdafn.WithLogger(logger)))
		return nil
	})
	logger.Error("RunFunction returned", slog.Any("error", err))
	os.Exit(1)
}

// lockService is the App function's service. Echo's text picks what it
// does:
//
//   - "lock": takes the lock "freeze" (lease freezeTTL) and answers
//     "token N";
//   - "check": answers "valid" or "lost: <why>" from the lock's Valid, the
//     check a handler makes before it writes, then takes and gives back
//     the lock "after" and adds " after N", its token: coordination works;
//   - anything else: echoes it, without coordination.
type lockService struct {
	concordtestv1connect.UnimplementedTestServiceHandler
	app *concord.App
	mu  *lock.Mutex
}

func (s *lockService) Echo(ctx context.Context, req *concordtestv1.EchoRequest) (*concordtestv1.EchoResponse, error) {
	switch req.GetText() {
	case "lock":
		token, err := s.mu.Lock(ctx)
		if err != nil {
			return nil, connect.Errorf(connect.CodeUnavailable, "lock: %v", err)
		}
		return &concordtestv1.EchoResponse{Text: fmt.Sprintf("token %d", token)}, nil
	case "check":
		text := "valid"
		if err := s.mu.Valid(); err != nil {
			text = "lost: " + err.Error()
		}
		after := s.app.Mutex("after")
		token, err := after.TryLock(ctx)
		if err != nil {
			return nil, connect.Errorf(connect.CodeUnavailable, "%s; lock after the pause: %v", text, err)
		}
		_ = after.Unlock(ctx)
		return &concordtestv1.EchoResponse{Text: fmt.Sprintf("%s after %d", text, token)}, nil
	}
	return &concordtestv1.EchoResponse{Text: req.GetText()}, nil
}

// cutProxy forwards TCP connections to a NATS node, counts them, and can
// cut every open one, as a server or network that dropped a frozen
// process's connection.
type cutProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu       sync.Mutex
	accepted int
	conns    []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.accepted++
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *cutProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}

// connections returns how many connections the proxy has accepted.
func (p *cutProxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// cut closes every open connection.
func (p *cutProxy) cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// TestAppFunctionFreeze runs an App in function mode under the real
// aws-lambda-go runtime loop (a child process) against a local Runtime API
// and a node reached through a proxy. It checks that coordination is
// connected only when a call first needs it; that the App registers
// nothing and opens no local store; and that after a freeze (SIGSTOP)
// longer than its lock's lease, during which the node dropped its
// connection and another process took the lock, the thawed handler's
// check says the lock is lost, and its next coordination call succeeds on
// a reconnected connection.
func TestAppFunctionFreeze(t *testing.T) {
	t.Parallel()
	node := nodetest.Open(t, coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth())
	proxy := newCutProxy(t, strings.TrimPrefix(node.ClientURL(), "nats://"))
	data := t.TempDir()
	api := newRuntimeAPI(t)
	child := startFunction(t, api, "app", "FN_NATS_URL="+proxy.url(), "FN_DATA="+data)

	echo := func(id, text string) string {
		t.Helper()
		o, _ := api.invoke(t, id, mustJSON(t, request(http.MethodPost, echoPath, "application/json", []byte(`{"text":"`+text+`"}`), false)), 15*time.Second)
		resp, body := decodeAnswer(t, o.body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", text, resp.StatusCode, body)
		}
		var res concordtestv1.EchoResponse
		if err := protojson.Unmarshal(body, &res); err != nil {
			t.Fatalf("%s: %s: %v", text, body, err)
		}
		return res.GetText()
	}

	// A call that needs no coordination does not connect.
	if got := echo("inv-plain", "plain"); got != "plain" {
		t.Fatalf("plain call answered %q", got)
	}
	if n := proxy.connections(); n != 0 {
		t.Fatalf("the App connected to coordination %d times before any call needed it", n)
	}

	// The first call that needs it connects, and takes the lock.
	got := echo("inv-lock", "lock")
	var token uint64
	if _, err := fmt.Sscanf(got, "token %d", &token); err != nil || token == 0 {
		t.Fatalf("lock call answered %q", got)
	}
	if n := proxy.connections(); n != 1 {
		t.Fatalf("connections after the first coordination call = %d, want 1", n)
	}
	ours := lock.NewMutex(lock.FromNode(node), "freeze", lock.WithTTL(freezeTTL))
	ctx := nodetest.Within(t, 30*time.Second)
	if _, err := ours.TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock while the function holds the lock: %v, want ErrLocked", err)
	}

	// Freeze the function past its lease; meanwhile its connection is cut
	// and the lock is taken here.
	if err := child.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = child.Process.Signal(syscall.SIGCONT)
		}
	}()
	proxy.cut()
	newer, err := ours.Lock(ctx) // waits out the frozen holder's lease
	if err != nil {
		t.Fatalf("Lock while the function is frozen: %v", err)
	}
	if newer <= token {
		t.Fatalf("token after the frozen holder's lease = %d, want > %d", newer, token)
	}
	if err := child.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false

	// Thawed: the handler knows its lock is gone, and coordination works
	// again on a new connection.
	got = echo("inv-check", "check")
	var after uint64
	if !strings.HasPrefix(got, "lost: ") || !strings.Contains(got, "lease") {
		t.Fatalf("check after the freeze answered %q, want the lock lost", got)
	}
	if _, err := fmt.Sscanf(got[strings.LastIndex(got, " after ")+1:], "after %d", &after); err != nil || after == 0 {
		t.Fatalf("check after the freeze answered %q, want a token for the lock \"after\"", got)
	}
	if n := proxy.connections(); n < 2 {
		t.Fatalf("connections after the freeze = %d, want a reconnection", n)
	}
	if ours.Token() != newer || ours.Valid() != nil {
		t.Fatalf("the lock taken during the freeze is no longer held: token %d, %v", ours.Token(), ours.Valid())
	}
	_ = ours.Unlock(ctx)

	// Function mode registers nothing and keeps nothing on disk.
	resolver := registry.NewResolver(node)
	defer resolver.Close()
	rctx, cancel := context.WithTimeout(ctx, time.Second) // Resolve waits for a first instance
	defer cancel()
	if insts, err := resolver.Resolve(rctx, concordtestv1connect.TestServiceName); len(insts) != 0 {
		t.Errorf("the function registered instances: %v (%v)", insts, err)
	}
	if entries, err := os.ReadDir(data); err != nil || len(entries) != 0 {
		t.Errorf("the function wrote to its data directory: %v (%v)", entries, err)
	}
	if _, err := os.Stat(filepath.Join(data, "local")); !os.IsNotExist(err) {
		t.Errorf("the function opened a local store: %v", err)
	}
}
