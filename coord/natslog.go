package coord

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"
)

// Repeated nats-server warnings and errors are rate-limited: after a peer
// dies, every surviving node retries each of its routes to it once a
// second and reports every failed attempt.
const (
	// natsLogWindow is how long repeats of a logged warning or error are
	// counted instead of logged.
	natsLogWindow = 30 * time.Second
	// natsLogMaxKinds bounds the kinds of warning and error tracked; the
	// kind whose window started first is evicted to make room.
	natsLogMaxKinds = 256
)

// natsLogger routes nats-server logs to slog. Unlike the server's own
// logger, Fatalf never exits the process: it logs at Error and records the
// message, which Open reports as its error.
//
// Warnings and errors are rate-limited by kind. A kind is the format string
// and the non-numeric arguments: numbers (attempt counts, sizes) change
// between repeats of one problem, while addresses and errors tell problems
// apart, so "Error trying to connect to route (attempt %v): %v" collapses
// the attempts to one peer but not the peers. The first line of a kind is
// logged at once and opens a natsLogWindow-long window in which further
// lines of the kind are only counted. The first line after the window is
// logged at once and opens a new window, preceded, if the old window
// counted any, by one summary line: the last counted line followed by
// "(repeated N times in 30s)". No timer runs, so the count of a kind that
// stops recurring is logged only if the kind is evicted: at most
// natsLogMaxKinds kinds are tracked, and a new kind evicts the one whose
// window opened first, logging its summary if it counted any. Fatalf, and
// lines below Warn, are never rate-limited.
type natsLogger struct {
	logger *slog.Logger
	level  slog.Level
	now    func() time.Time // time.Now if nil; tests set a fake clock

	mu    sync.Mutex
	fatal string
	kinds map[string]*natsLogKind
}

// natsLogKind tracks the window of one kind of warning or error.
type natsLogKind struct {
	start    time.Time  // when the window opened
	level    slog.Level // of the last counted line
	last     string     // the last counted line
	repeated int        // lines counted in the window
}

func (l *natsLogger) log(level slog.Level, format string, v []any) {
	ctx := context.Background()
	if level < l.level || !l.logger.Enabled(ctx, level) {
		return
	}
	msg := "nats: " + fmt.Sprintf(format, v...)
	if level < slog.LevelWarn {
		l.logger.Log(ctx, level, msg)
		return
	}
	summaries, ok := l.admit(natsLogKindOf(format, v), level, msg)
	for _, s := range summaries {
		l.logger.Log(ctx, s.level, s.summary())
	}
	if ok {
		l.logger.Log(ctx, level, msg)
	}
}

// admit reports whether a line of kind k is logged now and returns the
// summaries to log before it.
func (l *natsLogger) admit(k string, level slog.Level, msg string) (summaries []natsLogKind, ok bool) {
	now := time.Now
	if l.now != nil {
		now = l.now
	}
	t := now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kinds == nil {
		l.kinds = make(map[string]*natsLogKind)
	}
	e, found := l.kinds[k]
	if found && t.Sub(e.start) < natsLogWindow {
		e.level, e.last = level, msg
		e.repeated++
		return nil, false
	}
	if found {
		if e.repeated > 0 {
			summaries = append(summaries, *e)
		}
	} else if len(l.kinds) >= natsLogMaxKinds {
		var oldest string
		var o *natsLogKind
		for key, e := range l.kinds {
			if o == nil || e.start.Before(o.start) {
				oldest, o = key, e
			}
		}
		if o.repeated > 0 {
			summaries = append(summaries, *o)
		}
		delete(l.kinds, oldest)
	}
	l.kinds[k] = &natsLogKind{start: t}
	return summaries, true
}

func (e *natsLogKind) summary() string {
	return fmt.Sprintf("%s (repeated %d times in %v)", e.last, e.repeated, natsLogWindow)
}

// natsLogKindOf returns the kind of a line: its format and its non-numeric
// arguments.
func natsLogKindOf(format string, v []any) string {
	var b strings.Builder
	b.WriteString(format)
	for _, a := range v {
		switch reflect.ValueOf(a).Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
			reflect.Float32, reflect.Float64:
			continue
		}
		fmt.Fprintf(&b, "\x00%v", a)
	}
	return b.String()
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
