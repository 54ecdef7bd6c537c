package coord

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func TestAllLoopback(t *testing.T) {
	for _, tc := range []struct {
		hosts []string
		want  bool
	}{
		{nil, true},
		{[]string{"127.0.0.1:4222", "[::1]:4222", "localhost:6222", "127.0.0.2"}, true},
		{[]string{"127.0.0.1:6222", "10.0.0.2:6222"}, false},
		{[]string{"nats.internal:4222"}, false},
		{[]string{"0.0.0.0:4222"}, false},
	} {
		if got := allLoopback(tc.hosts); got != tc.want {
			t.Errorf("allLoopback(%q) = %v, want %v", tc.hosts, got, tc.want)
		}
	}
}

// TestDurabilityReport reads the sync setting from VARZ replies encoded
// with nats-server's own types.
func TestDurabilityReport(t *testing.T) {
	varz := func(cfg *server.JetStreamConfig) []byte {
		b, err := json.Marshal(server.ServerAPIResponse{Data: &server.Varz{JetStream: server.JetStreamVarz{Config: cfg}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name  string
		varz  []byte
		level slog.Level
		say   string
	}{
		{"always", varz(&server.JetStreamConfig{SyncAlways: true}), slog.LevelInfo, "fsync every JetStream write"},
		{"interval", varz(&server.JetStreamConfig{SyncInterval: 10 * time.Second}), slog.LevelWarn, "every 10s"},
		{"default", varz(&server.JetStreamConfig{}), slog.LevelWarn, "every 2m0s (nats-server's default)"},
		{"no reply", nil, slog.LevelWarn, "cannot read"},
		{"no JetStream", varz(nil), slog.LevelWarn, "cannot read"},
	} {
		level, msg := durability(tc.varz)
		if level != tc.level || !strings.Contains(msg, tc.say) {
			t.Errorf("%s: %v %q, want %v containing %q", tc.name, level, msg, tc.level, tc.say)
		}
	}
}
