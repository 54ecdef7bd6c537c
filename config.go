package concord

import (
	"google.golang.org/protobuf/proto"

	"github.com/concordrpc/concord/coord/config"
)

// Config returns a live, typed handle on the dynamic config name, whose
// values are messages of type T: Get returns the current value from
// memory (def until a version exists), Watch delivers each new version in
// order. The handle starts loading at once in the background: the last
// value this instance kept in its local store, then the cluster's through
// the App's coordination node (waiting for Run to open it, and following
// the App to a replaced node). It is closed when Run returns, after
// keeping its last value locally; close it yourself if Run is never
// called (closing it earlier is allowed too). The App's admin listener
// serves the config under ConfigPath for `concord config`, with T as its
// type until it has a version. A bad name does not panic:
// the handle serves def and its Wait reports config.ErrInvalid. Write
// versions with config.Store (see package config for the guarantees).
func Config[T proto.Message](app *App, name string, def T, opts ...config.Option) *config.Handle[T] {
	if any(def) != nil {
		app.configTypes.Store(name, def.ProtoReflect().Type())
	}
	h := config.New(app, app, name, def, append([]config.Option{config.WithLogger(app.cfg.logger)}, opts...)...)
	app.onStop(func() { _ = h.Close() })
	return h
}
