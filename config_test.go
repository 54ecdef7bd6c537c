package concord_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/config"
	"github.com/concordrpc/concord/internal/nodetest"
	v1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1"
)

// TestConfigLiveAndRestartWhileDown: a config handle on an App follows
// versions written to the cluster, in order, and closes when Run returns;
// the App restarted on the same data directory while coordination is
// unreachable starts with the last value it saw.
func TestConfigLiveAndRestartWhileDown(t *testing.T) {
	dir := t.TempDir()
	quiet := concord.WithLogger(slog.New(slog.DiscardHandler))
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithDataDir(dir), quiet)
	h := concord.Config(app, "greeting", &v1.EchoRequest{Text: "Hello, %s!"})
	if h.Get().GetText() != "Hello, %s!" || h.Version() != 0 {
		t.Fatalf("before Run: %q@%d", h.Get().GetText(), h.Version())
	}
	_, stop := startApp(t, app)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	node, err := app.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	updates := h.Watch(ctx)
	<-updates // the current value
	store := config.NewStore(node)
	var version uint64
	for _, text := range []string{"Hi, %s.", "Hey %s", "Good day, %s."} {
		if version, err = store.Set(ctx, "greeting", &v1.EchoRequest{Text: text}, version, "ops"); err != nil {
			t.Fatal(err)
		}
		select {
		case u := <-updates:
			if u.Value.GetText() != text || u.Version != version {
				t.Fatalf("watch delivered %q@%d, want %q@%d", u.Value.GetText(), u.Version, text, version)
			}
		case <-ctx.Done():
			t.Fatalf("version %d not delivered", version)
		}
	}
	if h.Get().GetText() != "Good day, %s." {
		t.Fatalf("Get = %q", h.Get().GetText())
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.Done():
	default:
		t.Fatal("the handle is still running after Run returned")
	}
	if _, ok := <-updates; ok {
		t.Fatal("watch open after Run returned")
	}

	// Restart in client mode towards an address where nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "nats://" + ln.Addr().String()
	ln.Close()
	app2 := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithDataDir(dir), quiet,
		concord.WithCoordOptions(coord.WithClient([]string{deadURL}, nodetest.ClientAuth())))
	h2 := concord.Config(app2, "greeting", &v1.EchoRequest{Text: "Hello, %s!"})
	_, stop2 := startApp(t, app2)
	if err := h2.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if h2.Get().GetText() != "Good day, %s." || h2.Version() != version {
		t.Fatalf("restarted while down: %q@%d, want the last known %q@%d", h2.Get().GetText(), h2.Version(), "Good day, %s.", version)
	}
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	<-h2.Done()
}
