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
