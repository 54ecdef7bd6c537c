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
