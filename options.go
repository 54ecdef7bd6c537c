package concord

import (
	"log/slog"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/rpc"
)

// DefaultAddr is where an App serves RPCs by default.
const DefaultAddr = "127.0.0.1:8080"

// Option configures an App.
type Option interface{ apply(*appConfig) }

type optionFunc func(*appConfig)

func (f optionFunc) apply(c *appConfig) { f(c) }

type appConfig struct {
	addr       string
	dataDir    string
	logger     *slog.Logger
	serverOpts []rpc.ServerOption
	coordOpts  []coord.Option
}

func defaultAppConfig() appConfig {
	return appConfig{addr: DefaultAddr, dataDir: coord.DefaultDataDir, logger: slog.Default()}
}

// WithAddr sets the address RPCs are served on. Default: DefaultAddr.
func WithAddr(addr string) Option {
	return optionFunc(func(c *appConfig) { c.addr = addr })
}

// WithDataDir sets the directory of the embedded node and local state.
// Default: coord.DefaultDataDir.
func WithDataDir(dir string) Option {
	return optionFunc(func(c *appConfig) { c.dataDir = dir })
}

// WithLogger sets the logger of the server and the node. Default:
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *appConfig) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithServerOptions passes options to the RPC server.
func WithServerOptions(opts ...rpc.ServerOption) Option {
	return optionFunc(func(c *appConfig) { c.serverOpts = append(c.serverOpts, opts...) })
}

// WithCoordOptions passes options to the coordination node, for example
// coord.WithCluster or coord.WithClient.
func WithCoordOptions(opts ...coord.Option) Option {
	return optionFunc(func(c *appConfig) { c.coordOpts = append(c.coordOpts, opts...) })
}
