package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
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
}
