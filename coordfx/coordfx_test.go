package coordfx_test

import (
	"log/slog"
	"testing"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coordfx"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestModule(t *testing.T) {
	var node *coord.Node
	app := fxtest.New(t,
		fx.NopLogger,
		coordfx.Module(),
		coordfx.Supply(coord.WithDataDir(t.TempDir()), coord.WithName("fxnode"), coord.WithLogger(slog.New(slog.DiscardHandler))),
		fx.Populate(&node),
	)
	app.RequireStart()
	st, err := node.Status(t.Context())
	if err != nil || st.Node != "fxnode" {
		t.Fatalf("status %+v %v", st, err)
	}
	app.RequireStop()
	if _, err := node.Status(t.Context()); err == nil {
		t.Fatal("node still open after stop")
	}
}
