package localstore

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// recorder is a slog.Handler that keeps every record.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}

func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) below(level slog.Level) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.records {
		if rec.Level < level {
			n++
		}
	}
	return n
}

func TestLogger(t *testing.T) {
	t.Parallel()
	t.Run("warn by default", func(t *testing.T) {
		t.Parallel()
		rec := &recorder{}
		s := open(t, WithLogger(slog.New(rec)))
		if err := s.Set([]byte("k"), []byte("v")); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if n := rec.below(slog.LevelWarn); n != 0 {
			t.Errorf("%d records below WARN reached the logger", n)
		}
	})
	t.Run("info on request", func(t *testing.T) {
		t.Parallel()
		rec := &recorder{}
		s := open(t, WithLogger(slog.New(rec)), WithLogLevel(slog.LevelInfo))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if rec.below(slog.LevelWarn) == 0 {
			t.Fatal("no INFO records from Badger with WithLogLevel(slog.LevelInfo)")
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, r := range rec.records {
			if strings.HasSuffix(r.Message, "\n") {
				t.Errorf("message keeps Badger's newline: %q", r.Message)
			}
			component := ""
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "component" {
					component = a.Value.String()
				}
				return true
			})
			if component != "badger" {
				t.Errorf("record %q has component %q, want badger", r.Message, component)
			}
		}
	})
}
