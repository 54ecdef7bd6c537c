package config

import (
	"log/slog"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Option tunes a Store (NewStore) or a Handle (New). Each option says
// which it applies to; the other ignores it.
type Option interface{ apply(*options) }

type options struct {
	logger    *slog.Logger
	validator protovalidate.Validator
	types     protoregistry.MessageTypeResolver
	buffer    int
}

func defaultOptions() options {
	return options{logger: slog.New(slog.DiscardHandler), types: protoregistry.GlobalTypes, buffer: DefaultWatchBuffer}
}

func newOptions(opts []Option) options {
	o := defaultOptions()
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&o)
		}
	}
	return o
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithLogger sets the logger of a Handle (stored versions it skips, lost
// connections) or a Store. Default: none.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) {
		if l != nil {
			o.logger = l
		}
	})
}

// WithValidator sets the protovalidate validator a Store checks values
// with. Default: protovalidate.New(), built on first use.
func WithValidator(v protovalidate.Validator) Option {
	return optionFunc(func(o *options) { o.validator = v })
}

// WithTypes sets where a Store finds the message type of a stored version
// that Rollback re-validates (for example a protoregistry.Types built from
// a descriptor set). Default: protoregistry.GlobalTypes, the types linked
// into the binary.
func WithTypes(r protoregistry.MessageTypeResolver) Option {
	return optionFunc(func(o *options) {
		if r != nil {
			o.types = r
		}
	})
}

// DefaultWatchBuffer is how many versions a Handle's watcher may fall
// behind by before it skips (see Handle.Watch).
const DefaultWatchBuffer = 256

// WithWatchBuffer sets how many undelivered versions a Handle keeps per
// watcher (at least 1). Default: DefaultWatchBuffer.
func WithWatchBuffer(n int) Option {
	return optionFunc(func(o *options) { o.buffer = max(n, 1) })
}
