package coordfx

import (
	"context"

	"go.uber.org/fx"

	"github.com/concordrpc/concord/coord"
)

const optionsGroup = `group:"coord.options"`

// Module provides *coord.Node, opened with every Option supplied with
// Supply, and closes it when fx stops.
func Module() fx.Option {
	return fx.Module("coord", fx.Provide(newNode))
}

// Supply adds options for the node.
func Supply(opts ...coord.Option) fx.Option {
	var out []fx.Option
	for _, o := range opts {
		out = append(out, fx.Supply(fx.Annotate(o, fx.As(new(coord.Option)), fx.ResultTags(optionsGroup))))
	}
	return fx.Options(out...)
}

type params struct {
	fx.In
	Options   []coord.Option `group:"coord.options"`
	Lifecycle fx.Lifecycle
}

func newNode(p params) (*coord.Node, error) {
	node, err := coord.Open(context.Background(), p.Options...)
	if err != nil {
		return nil, err
	}
	p.Lifecycle.Append(fx.StopHook(node.Close))
	return node, nil
}
