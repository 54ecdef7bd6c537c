// Package coordfx offers a standalone coordination node (package coord) as
// an fx module, for processes that need coordination without Concord's RPC
// App (an App already owns a node: see concordfx). Nothing in coord needs
// fx.
//
//	fx.New(
//		coordfx.Module(),
//		coordfx.Supply(coord.WithDataDir("/var/lib/worker"), coord.WithName("worker-1")),
//		fx.Invoke(func(n *coord.Node) { ... }),
//	).Run()
//
// The node is opened when it is first needed (it is ready when the
// constructor returns; fx's start timeout does not apply to constructors,
// coord.DefaultReadyTimeout does) and closed on stop.
package coordfx
