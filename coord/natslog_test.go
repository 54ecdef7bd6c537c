package coord

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// testNATSLogger returns a natsLogger on a fake clock that logs every level
// to the returned buffer, and a function that advances the clock.
func testNATSLogger() (*natsLogger, *bytes.Buffer, func(time.Duration)) {
	buf := new(bytes.Buffer)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := &natsLogger{
		logger: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug - 4})),
		level:  slog.LevelDebug - 4,
		now:    func() time.Time { return now },
	}
	return l, buf, func(d time.Duration) { now = now.Add(d) }
}

func logLines(buf *bytes.Buffer) []string {
	s := strings.TrimSpace(buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestNATSLogRouteErrors replays what a node logs after both its peers
// died: nats-server retries each of four routes per peer once a second and
// reports every failed attempt, with the attempt count in the line.
func TestNATSLogRouteErrors(t *testing.T) {
	l, buf, advance := testNATSLogger()
	const connErrFmt = "Error trying to connect to route (attempt %v): %v" // nats-server route.go
	peers := []error{
		errors.New("dial tcp 10.0.0.2:6222: connect: connection refused"),
		errors.New("dial tcp 10.0.0.3:6222: connect: connection refused"),
	}
	for sec := range 95 {
		for range 4 {
			for _, err := range peers {
				l.Errorf(connErrFmt, sec+1, err)
			}
			advance(250 * time.Millisecond)
		}
	}
	// Per peer, one window for [0s, 30s), [30s, 60s), [60s, 90s) and
	// [90s, 95s): the first line of each is logged, and each of the next
	// three is preceded by the summary of the 4*30-1 lines counted in the
	// one before.
	lines := logLines(buf)
	if len(lines) != 2*7 {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), 2*7, buf)
	}
	for i, want := range []string{
		"(attempt 1): dial tcp 10.0.0.2:6222",
		"(attempt 1): dial tcp 10.0.0.3:6222",
		"(attempt 30): dial tcp 10.0.0.2:6222: connect: connection refused (repeated 119 times in 30s)",
		"(attempt 31): dial tcp 10.0.0.2:6222",
		"(attempt 30): dial tcp 10.0.0.3:6222: connect: connection refused (repeated 119 times in 30s)",
		"(attempt 31): dial tcp 10.0.0.3:6222",
	} {
		if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], "level=ERROR") {
			t.Errorf("line %d = %q, want an error containing %q", i, lines[i], want)
		}
	}
}

// TestNATSLogKinds checks which lines are rate-limited and which are not.
func TestNATSLogKinds(t *testing.T) {
	l, buf, advance := testNATSLogger()
	for i := range 10 {
		l.Warnf("JetStream cluster stream %q has NO quorum, stalled", "KV_locks")
		l.Warnf("JetStream cluster stream %q has NO quorum, stalled", "KV_config")
		l.Errorf("Error looking up account %q: %v", "APP", errors.New("not found"))
		l.Noticef("Route connection created for %v", i)
		l.Debugf("Trying to connect to route on %s", "10.0.0.2:6222")
		advance(time.Second)
	}
	// Each of the three warning and error kinds once, every notice and
	// debug line.
	if got := len(logLines(buf)); got != 3+10+10 {
		t.Fatalf("got %d lines, want %d:\n%s", got, 3+10+10, buf)
	}
	// A fatal error is logged every time, and the first is kept for Open.
	buf.Reset()
	for range 3 {
		l.Fatalf("Can't listen on %s: %v", "127.0.0.1:4222", errors.New("address in use"))
	}
	if got := len(logLines(buf)); got != 3 {
		t.Fatalf("got %d fatal lines, want 3:\n%s", got, buf)
	}
	if got, want := l.fatalError(), "Can't listen on 127.0.0.1:4222: address in use"; got != want {
		t.Fatalf("fatalError() = %q, want %q", got, want)
	}
}

// TestNATSLogMaxKinds checks that the tracked kinds are bounded and that an
// evicted kind's count is not lost.
func TestNATSLogMaxKinds(t *testing.T) {
	l, buf, advance := testNATSLogger()
	const extra = 10
	for i := range natsLogMaxKinds + extra {
		err := fmt.Errorf("dial tcp 10.0.%d.%d:6222: connect: connection refused", i/256, i%256)
		l.Errorf("Error trying to connect to route (attempt %v): %v", 1, err)
		l.Errorf("Error trying to connect to route (attempt %v): %v", 2, err)
		advance(time.Millisecond)
	}
	if got := len(l.kinds); got != natsLogMaxKinds {
		t.Fatalf("tracking %d kinds, want %d", got, natsLogMaxKinds)
	}
	// Every kind's first line, and the summaries of the evicted ones.
	lines := logLines(buf)
	if len(lines) != natsLogMaxKinds+2*extra {
		t.Fatalf("got %d lines, want %d", len(lines), natsLogMaxKinds+2*extra)
	}
	if want := "(attempt 2): dial tcp 10.0.0.0:6222: connect: connection refused (repeated 1 times in 30s)"; !strings.Contains(lines[natsLogMaxKinds], want) {
		t.Fatalf("line %d = %q, want the summary of the first kind", natsLogMaxKinds, lines[natsLogMaxKinds])
	}
}
