package concordfx_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/concordfx"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/rpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestModule(t *testing.T) {
	var app *concord.App
	fxApp := fxtest.New(t,
		fx.NopLogger,
		concordfx.Module(),
		concordfx.Supply(
			concord.WithAddr("127.0.0.1:0"),
			concord.WithDataDir(t.TempDir()),
			concord.WithLogger(slog.New(slog.DiscardHandler)),
		),
		fx.Invoke(func(a *concord.App) { greeterv1concord.RegisterGreeterService(a, greeter.Service{}) }),
		fx.Populate(&app),
	)
	fxApp.RequireStart()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	addr, err := app.Server().Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn := rpc.NewConn("http://" + addr.String())
	defer conn.Close()
	res, err := greeterv1concord.NewGreeterServiceClient(conn).Greet(ctx, &greeterv1.GreetRequest{Name: "fx"})
	if err != nil || res.GetGreeting() != "Hello, fx!" {
		t.Fatalf("Greet: %v %v", res, err)
	}
	if _, err := app.Node(ctx); err != nil {
		t.Fatal(err)
	}
	fxApp.RequireStop()
}
