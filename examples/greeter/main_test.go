package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBinary builds the greeter, starts it as `make run` does (on a free
// loopback port), calls it with a curl-shaped Connect JSON request, and
// stops it with SIGTERM, which must drain and exit 0.
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "greeter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-addr", "127.0.0.1:0", "-data", t.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stderr)
	addrRE := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`)
	var addr string
	var logs []string
	for addr == "" && lines.Scan() {
		logs = append(logs, lines.Text())
		if m := addrRE.FindStringSubmatch(lines.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("greeter never reported its address; logs:\n%s", strings.Join(logs, "\n"))
	}
	rest := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(stderr)
		rest <- string(b)
	}()

	for _, tc := range []struct{ body, want string }{
		{`{"name":"Ada"}`, `{"greeting":"Hello, Ada!"}`},
		{`{"name":""}`, `"code":"invalid_argument","message":"validation error: name: must be at least 1 characters"`},
	} {
		res, err := http.Post("http://"+addr+"/greeter.v1.GreeterService/Greet", "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(got), tc.want) {
			t.Errorf("POST %s: got %s, want it to contain %s", tc.body, got, tc.want)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("greeter exited with %v after SIGTERM; logs:\n%s", err, <-rest)
	}
	if logs := <-rest; !strings.Contains(logs, "draining") {
		t.Errorf("greeter did not drain on SIGTERM; logs:\n%s", logs)
	}

	// CONCORD_LOG_FORMAT=json: every log line is one JSON object, from the
	// first to the last of a start and a drain.
	cmd = exec.CommandContext(ctx, bin, "-addr", "127.0.0.1:0", "-admin", "", "-data", t.TempDir())
	cmd.Env = append(cmd.Environ(), "CONCORD_LOG_FORMAT=json")
	if stderr, err = cmd.StderrPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines = bufio.NewScanner(stderr)
	var jsonLogs []string
	for lines.Scan() {
		jsonLogs = append(jsonLogs, lines.Text())
		if strings.Contains(lines.Text(), `"msg":"rpc: serving"`) {
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("greeter -log-format json exited with %v; logs:\n%s", err, strings.Join(jsonLogs, "\n"))
	}
	if !slices.ContainsFunc(jsonLogs, func(l string) bool { return strings.Contains(l, `"msg":"rpc: draining"`) }) {
		t.Errorf("no JSON line for the drain; logs:\n%s", strings.Join(jsonLogs, "\n"))
	}
	for _, l := range jsonLogs {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["level"] == nil || m["msg"] == nil || m["time"] == nil {
			t.Errorf("log line is not a JSON log record (%v): %s", err, l)
		}
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	logger, err := newLogger(&buf, "json")
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("hello", "addr", "127.0.0.1:8080")
	logger.Debug("hidden")
	var rec struct{ Level, Msg, Addr string }
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec != (struct{ Level, Msg, Addr string }{"INFO", "hello", "127.0.0.1:8080"}) {
		t.Fatalf("json logger wrote %q (%v)", buf.String(), err)
	}
	buf.Reset()
	if logger, err = newLogger(&buf, "text"); err != nil {
		t.Fatal(err)
	}
	logger.Info("hello")
	if !strings.HasPrefix(buf.String(), "time=") || !strings.Contains(buf.String(), "msg=hello") {
		t.Fatalf("text logger wrote %q", buf.String())
	}
	if _, err := newLogger(&buf, "yaml"); err == nil {
		t.Fatal("-log-format yaml accepted")
	}
}
