package concord_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/concordrpc/concord"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/rpc"
)

// An App with an embedded coordination node: register generated services,
// then Run until the context ends (or SIGTERM).
func ExampleApp() {
	dir, _ := os.MkdirTemp("", "concord-example-")
	defer os.RemoveAll(dir)
	app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithDataDir(dir),
		concord.WithLogger(slog.New(slog.DiscardHandler)))
	greeterv1concord.RegisterGreeterService(app, greeter.Service{})

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()

	node, err := app.Node(ctx) // waits until coordination is ready
	if err != nil {
		panic(err)
	}
	addr, _ := app.Server().Addr(ctx)
	conn := rpc.NewConn("http://" + addr.String())
	defer conn.Close()
	res, err := greeterv1concord.NewGreeterServiceClient(conn).Greet(ctx, &greeterv1.GreetRequest{Name: "Ada"})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.GetGreeting(), node.Mode())
	stop()
	fmt.Println(<-done)
	// Output:
	// Hello, Ada! embedded
	// <nil>
}

// An App in function mode: RunFunction hands the App's handler to the
// function runtime (on AWS Lambda, lambda.Start(lambdafn.New(h))), here
// called directly; there is no listener and coordination would connect,
// in client mode, only when a call first needs it.
func ExampleApp_RunFunction() {
	app := concord.New(concord.WithLogger(slog.New(slog.DiscardHandler)))
	greeterv1concord.RegisterGreeterService(app, greeter.Service{})
	err := app.RunFunction(context.Background(), func(h http.Handler) error {
		req := httptest.NewRequest(http.MethodPost, "/greeter.v1.GreeterService/Greet", strings.NewReader(`{"name":"Ada"}`))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Println(rec.Code, rec.Body.String())
		return nil // lambda.Start never returns
	})
	fmt.Println(err)
	// Output:
	// 200 {"greeting":"Hello, Ada!"}
	// <nil>
}
