package coord

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// natsLogger routes nats-server logs to slog. Unlike the server's own
// logger, Fatalf never exits the process: it logs at Error and records the
// message, which Open reports as its error.
type natsLogger struct {
	logger *slog.Logger
	level  slog.Level

	mu    sync.Mutex
	fatal string
}

func (l *natsLogger) log(level slog.Level, format string, v []any) {
	if level < l.level || !l.logger.Enabled(context.Background(), level) {
		return
	}
	l.logger.Log(context.Background(), level, "nats: "+fmt.Sprintf(format, v...))
}

func (l *natsLogger) Noticef(format string, v ...any) { l.log(slog.LevelInfo, format, v) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log(slog.LevelWarn, format, v) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.log(slog.LevelError, format, v) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.log(slog.LevelDebug, format, v) }
func (l *natsLogger) Tracef(format string, v ...any)  { l.log(slog.LevelDebug-4, format, v) }

func (l *natsLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	if l.fatal == "" {
		l.fatal = msg
	}
	l.mu.Unlock()
	l.logger.Error("nats: fatal: " + msg)
}

func (l *natsLogger) fatalError() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}
