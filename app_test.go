package concord_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/rpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runApp runs a greeter App on a free loopback port and returns it, its
// base URL and a function that stops it and returns Run's result.
func runApp(t *testing.T, dir string) (*concord.App, string, func() error) {
	t.Helper()
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"), concord.WithDataDir(dir),
		concord.WithLogger(slog.New(slog.DiscardHandler)))
	greeterv1concord.RegisterGreeterService(app, greeter.Service{})
	url, stop := startApp(t, app)
	return app, url, stop
}

func TestAppLifecycle(t *testing.T) {
	dir := t.TempDir()
	app, url, stop := runApp(t, dir)
	// RPCs are served before coordination is needed.
	conn := rpc.NewConn(url)
	defer conn.Close()
	res, err := greeterv1concord.NewGreeterServiceClient(conn).Greet(t.Context(), &greeterv1.GreetRequest{Name: "app"})
	if err != nil || res.GetGreeting() != "Hello, app!" {
		t.Fatalf("Greet: %v %v", res, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	node, err := app.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	local, err := app.Local(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := local.Set([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if ready, why := app.Server().Ready(); !ready {
		t.Fatalf("not ready after the node opened: %s", why)
	}
	admin, err := app.AdminAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res404, err := http.Get(url + concord.StatusPath)
	if err != nil {
		t.Fatal(err)
	}
	res404.Body.Close()
	if res404.StatusCode != http.StatusNotFound {
		t.Fatalf("the RPC port serves status: HTTP %d", res404.StatusCode)
	}
	httpRes, err := http.Get("http://" + admin.String() + concord.StatusPath)
	if err != nil {
		t.Fatal(err)
	}
	var st coord.Status
	err = json.NewDecoder(httpRes.Body).Decode(&st)
	httpRes.Body.Close()
	if err != nil || st.Mode != "embedded" || st.MetaLeader != node.Name() || len(st.Buckets) != 8 {
		t.Fatalf("status %+v %v", st, err)
	}

	// A second App on the same data directory is rejected with a clear error.
	second := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithDataDir(dir),
		concord.WithLogger(slog.New(slog.DiscardHandler)))
	rctx, rcancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer rcancel()
	err = second.Run(rctx)
	if !errors.Is(err, coord.ErrDataDirInUse) || !errors.Is(err, concord.ErrNotReady) {
		t.Fatalf("second app on %s: %v, want ErrDataDirInUse", dir, err)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := local.Get([]byte("k")); err == nil {
		t.Fatal("local store still open after Run returned")
	}
	// Local state survives a restart.
	app, _, stop = runApp(t, dir)
	local, err = app.Local(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := local.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("after restart: %q %v", v, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
