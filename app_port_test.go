package concord_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
)

// TestAppHonoursPORT: an App given no address serves on all interfaces at
// $PORT, as Cloud Run and Knative expect, registers (the advertise rules
// accept it) and becomes ready; WithAddr wins over PORT.
func TestAppHonoursPORT(t *testing.T) {
	port := freePort(t)
	t.Setenv(concord.PortEnv, strconv.Itoa(port))

	app := concord.New(concord.WithAdminAddr(""), concord.WithDataDir(t.TempDir()), concord.WithDrainDelay(0),
		concord.WithLogger(slog.New(slog.DiscardHandler)))
	greeterv1concord.RegisterGreeterService(app, greeter.Service{})
	startApp(t, app)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	addr, err := app.Server().Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tcp, ok := addr.(*net.TCPAddr); !ok || !tcp.IP.IsUnspecified() || tcp.Port != port {
		t.Fatalf("App listens on %v, want all interfaces at PORT %d", addr, port)
	}
	if _, err := app.Node(ctx); err != nil {
		t.Fatal(err)
	}
	if ready, why := app.Server().Ready(); !ready {
		t.Fatalf("not ready on :PORT: %s", why)
	}
	res, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /readyz on 127.0.0.1:PORT: HTTP %d", res.StatusCode)
	}

	// An explicit address wins over PORT.
	other := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr(""), concord.WithDataDir(t.TempDir()),
		concord.WithDrainDelay(0), concord.WithLogger(slog.New(slog.DiscardHandler)))
	startApp(t, other)
	addr, err = other.Server().Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tcp := addr.(*net.TCPAddr); !tcp.IP.IsLoopback() || tcp.Port == port {
		t.Fatalf("App with WithAddr(127.0.0.1:0) listens on %v, want loopback on a port of its own", addr)
	}
}

// freePort returns a TCP port free on loopback at the time of the call
// (the test listens on every interface only where the App must).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
