package localstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// slogAdapter routes Badger's printf-style log calls to a *slog.Logger,
// dropping those below min before formatting them.
type slogAdapter struct {
	l   *slog.Logger
	min slog.Level
}

var _ badger.Logger = slogAdapter{}

func (a slogAdapter) Errorf(format string, args ...any) { a.log(slog.LevelError, format, args) }

func (a slogAdapter) Warningf(format string, args ...any) { a.log(slog.LevelWarn, format, args) }

func (a slogAdapter) Infof(format string, args ...any) { a.log(slog.LevelInfo, format, args) }

func (a slogAdapter) Debugf(format string, args ...any) { a.log(slog.LevelDebug, format, args) }

func (a slogAdapter) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if level < a.min || !a.l.Enabled(ctx, level) {
		return
	}
	// Badger terminates most messages with a newline; slog adds its own.
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	a.l.LogAttrs(ctx, level, msg, slog.String("component", "badger"))
}
