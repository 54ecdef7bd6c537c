// Package concordfx offers Concord's App as an fx module, for teams that
// build their services with go.uber.org/fx. It adds nothing else: the same
// App works without fx (package concord).
//
//	fx.New(
//		concordfx.Module(),
//		concordfx.Supply(concord.WithAddr(":8080"), concord.WithDataDir("/var/lib/greeter")),
//		fx.Invoke(func(app *concord.App) { greeterv1concord.RegisterGreeterService(app, greeter.Service{}) }),
//	).Run()
//
// The App starts when fx starts: OnStart returns once the RPC listener is
// open (coordination keeps starting in the background; /readyz reports it).
// OnStop drains the server and closes the node. If the App stops on its own
// (SIGTERM, or coordination failed to start) it asks fx to shut down.
package concordfx

import (
	"context"
	"fmt"

	"go.uber.org/fx"

	"github.com/concordrpc/concord"
)

// optionsGroup is the value group of concord.Options.
const optionsGroup = `group:"concord.options"`

// Module provides *concord.App, built from every Option supplied with
// Supply, and ties its Run to the fx lifecycle.
func Module() fx.Option {
	return fx.Module("concord", fx.Provide(newApp))
}

// Supply adds options for the App.
func Supply(opts ...concord.Option) fx.Option {
	var out []fx.Option
	for _, o := range opts {
		out = append(out, fx.Supply(fx.Annotate(o, fx.As(new(concord.Option)), fx.ResultTags(optionsGroup))))
	}
	return fx.Options(out...)
}

type params struct {
	fx.In
	Options    []concord.Option `group:"concord.options"`
	Lifecycle  fx.Lifecycle
	Shutdowner fx.Shutdowner
}

func newApp(p params) *concord.App {
	app := concord.New(p.Options...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(startCtx context.Context) error {
			go func() {
				err := app.Run(ctx)
				done <- err
				if ctx.Err() == nil { // stopped on its own: take fx down with it
					_ = p.Shutdowner.Shutdown(fx.ExitCode(exitCode(err)))
				}
			}()
			select {
			case <-app.Server().Listening():
				return nil
			case err := <-done:
				done <- err
				return fmt.Errorf("concordfx: app stopped while starting: %w", err)
			case <-startCtx.Done():
				cancel()
				return startCtx.Err()
			}
		},
		OnStop: func(stopCtx context.Context) error {
			cancel()
			select {
			case err := <-done:
				return err
			case <-stopCtx.Done():
				return fmt.Errorf("concordfx: app did not drain in time: %w", stopCtx.Err())
			}
		},
	})
	return app
}

func exitCode(err error) int {
	if err != nil {
		return 1
	}
	return 0
}
