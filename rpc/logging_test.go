package rpc_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/internal/syncbuf"
	"github.com/concordrpc/concord/rpc"
)

// callLine is the part of a JSON "rpc call" log line the tests check.
type callLine struct {
	Level string `json:"level"`
	Code  string `json:"code"`
}

// callLines returns the "rpc call" lines written to buf so far.
func callLines(t *testing.T, buf *syncbuf.Buffer) []callLine {
	t.Helper()
	var lines []callLine
	for _, raw := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if raw == "" {
			continue
		}
		var rec struct {
			Msg string `json:"msg"`
			callLine
		}
		if err := json.Unmarshal([]byte(raw), &rec); err != nil {
			t.Fatalf("log line %q: %v", raw, err)
		}
		if rec.Msg == "rpc call" {
			lines = append(lines, rec.callLine)
		}
	}
	return lines
}

// TestCallLogging runs calls against a server whose logger is an Info-level
// handler, the level the greeter and `concord node` run at, and checks which
// calls are logged and at which level.
func TestCallLogging(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []rpc.ServerOption
		calls []string // "ok", "fail" (unavailable) or "panic" (internal)
		want  []callLine
	}{
		{
			name:  "default level",
			calls: []string{"ok", "fail", "panic"},
			want:  []callLine{{"WARN", "unavailable"}, {"ERROR", "internal"}},
		},
		{
			name:  "info level",
			opts:  []rpc.ServerOption{rpc.WithCallLogLevel(slog.LevelInfo)},
			calls: []string{"ok", "fail"},
			want:  []callLine{{"INFO", ""}, {"WARN", "unavailable"}},
		},
		{
			name:  "error level",
			opts:  []rpc.ServerOption{rpc.WithCallLogLevel(slog.LevelError)},
			calls: []string{"ok"},
			want:  []callLine{{"ERROR", ""}},
		},
		{
			name:  "without call logging",
			opts:  []rpc.ServerOption{rpc.WithoutCallLogging()},
			calls: []string{"ok", "fail"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := new(syncbuf.Buffer)
			logger := slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
			g := &testGreeter{}
			ts := startServer(t, rpc.NewServer(append([]rpc.ServerOption{rpc.WithLogger(logger)}, tc.opts...)...), g)
			client := greeterv1connect.NewGreeterServiceClient(connect.NewClient(connectTransport(ts.url)))
			for _, call := range tc.calls {
				name, wantCode := "Ada", connect.Code(0)
				switch call {
				case "fail":
					wantCode = connect.CodeUnavailable
				case "panic":
					name, wantCode = "panic", connect.CodeInternal
				}
				g.failing.Store(call == "fail")
				_, err := client.Greet(t.Context(), &greeterv1.GreetRequest{Name: name})
				if got := connect.CodeOf(err); (err == nil) != (wantCode == 0) || (err != nil && got != wantCode) {
					t.Fatalf("%s call: %v, want code %v", call, err, wantCode)
				}
			}
			// A successful call may be logged just after its response is
			// sent, so wait for the expected lines to arrive.
			var got []callLine
			for i, deadline := 0, time.Now().Add(5*time.Second); i < 500; i++ {
				if got = callLines(t, buf); len(got) >= len(tc.want) || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d rpc call lines %+v, want %+v; log:\n%s", len(got), got, tc.want, buf)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("line %d: got %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}
