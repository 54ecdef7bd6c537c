package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the Concord checkout this test runs in: --replace points at it.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no Concord checkout at %s: %v", root, err)
	}
	return root
}

// tree lists every path under dir, to show that a failed command wrote
// nothing.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		paths = append(paths, path)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

func TestNewBadInput(t *testing.T) {
	root := repoRoot(t)
	for _, tc := range []struct {
		name  string
		dir   string                            // relative to a fresh parent directory
		setup func(t *testing.T, parent string) // prepares the parent
		args  []string                          // after DIR
		usage bool                              // a usage error, not a bad value
		want  string                            // in the error
	}{
		{name: "no dir", usage: true, want: "exactly one DIR"},
		{name: "two dirs", dir: "hello", args: []string{"other"}, usage: true, want: "exactly one DIR"},
		{name: "unknown flag", dir: "hello", args: []string{"--frob"}, usage: true, want: "frob"},
		{
			name: "non-empty dir", dir: "hello", args: []string{"--replace", root}, want: "is not empty",
			setup: func(t *testing.T, parent string) {
				writeTestFile(t, filepath.Join(parent, "hello", "keep.txt"), "mine")
			},
		},
		{
			name: "file in the way", dir: "hello", args: []string{"--replace", root}, want: "not a directory",
			setup: func(t *testing.T, parent string) { writeTestFile(t, filepath.Join(parent, "hello"), "mine") },
		},
		{name: "module without a dot", dir: "hello", args: []string{"--module", "hello", "--replace", root}, want: "missing dot in first path element"},
		{name: "module with a space", dir: "hello", args: []string{"--module", "example.com/my app", "--replace", root}, want: "invalid char"},
		{name: "module ending in v1", dir: "hello", args: []string{"--module", "example.com/hello/v1", "--replace", root}, want: "--module"},
		{name: "module from dir name", dir: "my app", args: []string{"--replace", root}, want: "pass --module"},
		{name: "lower-case service", dir: "hello", args: []string{"--service", "hello", "--replace", root}, want: "UpperCamel"},
		{name: "service with a dash", dir: "hello", args: []string{"--service", "Hello-World", "--replace", root}, want: "UpperCamel"},
		{name: "service with an underscore", dir: "hello", args: []string{"--service", "Hello_World", "--replace", root}, want: "UpperCamel"},
		{name: "service starting with a digit", dir: "hello", args: []string{"--service", "9Lives", "--replace", root}, want: "UpperCamel"},
		{name: "service without a name", dir: "hello", args: []string{"--service", "Service", "--replace", root}, want: "before the Service suffix"},
		{name: "service from dir name", dir: "123", args: []string{"--replace", root}, want: "pass --service"},
		{name: "replace that does not exist", dir: "hello", args: []string{"--replace", filepath.Join(root, "no-such-dir")}, want: "is not a Concord checkout"},
		{
			name: "replace without go.mod", dir: "hello", args: []string{"--replace", "empty"}, want: "is not a Concord checkout",
			setup: func(t *testing.T, parent string) { os.Mkdir(filepath.Join(parent, "empty"), 0o755) },
		},
		{
			name: "replace of another module", dir: "hello", args: []string{"--replace", "other"}, want: `declares module "example.com/other"`,
			setup: func(t *testing.T, parent string) {
				writeTestFile(t, filepath.Join(parent, "other", "go.mod"), "module example.com/other\n")
			},
		},
		// The test binary is a build of a local checkout: no version to pin.
		{name: "no replace in a devel build", dir: "hello", want: "pass --replace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, parent)
			}
			before := tree(t, parent)
			args := []string{"new"}
			if tc.dir != "" {
				args = append(args, filepath.Join(parent, tc.dir))
			}
			args = append(args, tc.args...)
			// Relative --replace paths are relative to the parent.
			for i, a := range args {
				if i > 0 && args[i-1] == "--replace" && !filepath.IsAbs(a) {
					args[i] = filepath.Join(parent, a)
				}
			}
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run(%q) = %v, want an error containing %q", args[1:], err, tc.want)
			}
			var uerr usageError
			if errors.As(err, &uerr) != tc.usage {
				t.Errorf("run(%q) = %v; usage error: %v, want %v", args[1:], err, !tc.usage, tc.usage)
			}
			if after := tree(t, parent); !slices.Equal(before, after) {
				t.Errorf("a failed concord new wrote files:\nbefore %q\nafter  %q", before, after)
			}
			if stdout.Len() > 0 || strings.Contains(stderr.String(), "concord new:") {
				t.Errorf("a failed concord new reported progress: %q %q", stdout.String(), stderr.String())
			}
		})
	}
}

func writeTestFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestConcordVersion(t *testing.T) {
	const concord = "github.com/concordrpc/concord"
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string // "" for an error
	}{
		{"go run cmd/concord@v0.3.1", &debug.BuildInfo{Main: debug.Module{Path: concord, Version: "v0.3.1"}}, "v0.3.1"},
		{"pseudo-version", &debug.BuildInfo{Main: debug.Module{Path: concord, Version: "v0.3.2-0.20261101120000-0123456789ab"}}, "v0.3.2-0.20261101120000-0123456789ab"},
		{"go tool concord in another module", &debug.BuildInfo{
			Main: debug.Module{Path: "example.com/app", Version: "(devel)"},
			Deps: []*debug.Module{{Path: "golang.org/x/mod", Version: "v0.41.0"}, {Path: concord, Version: "v0.4.0"}},
		}, "v0.4.0"},
		{"local checkout", &debug.BuildInfo{Main: debug.Module{Path: concord, Version: "(devel)"}}, ""},
		{"modified checkout", &debug.BuildInfo{Main: debug.Module{Path: concord, Version: "v0.3.2-0.20261101120000-0123456789ab+dirty"}}, ""},
		{"replaced dependency", &debug.BuildInfo{
			Main: debug.Module{Path: "example.com/app"},
			Deps: []*debug.Module{{Path: concord, Version: "v0.0.0", Replace: &debug.Module{Path: "../concord"}}},
		}, ""},
		{"no build info", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := concordVersion(tc.bi, tc.bi != nil)
			switch {
			case tc.want == "" && (err == nil || !strings.Contains(err.Error(), "pass --replace")):
				t.Errorf("concordVersion = %q, %v; want an error that suggests --replace", got, err)
			case tc.want != "" && (err != nil || got != tc.want):
				t.Errorf("concordVersion = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		module     string
		positional []string
	}{
		{[]string{"dir"}, "", []string{"dir"}},
		{[]string{"dir", "--module", "example.com/m"}, "example.com/m", []string{"dir"}},
		{[]string{"-module=example.com/m", "dir"}, "example.com/m", []string{"dir"}},
		{[]string{"a", "-module", "example.com/m", "b"}, "example.com/m", []string{"a", "b"}},
		{[]string{"--", "-dir", "--module"}, "", []string{"-dir", "--module"}},
		{[]string{"dir", "--", "-x"}, "", []string{"dir", "-x"}},
	} {
		fset := flag.NewFlagSet("new", flag.ContinueOnError)
		module := fset.String("module", "", "")
		got, err := parseInterspersed(fset, tc.args)
		if err != nil || *module != tc.module || !slices.Equal(got, tc.positional) {
			t.Errorf("parseInterspersed(%q) = %q, %v with module %q; want %q with module %q", tc.args, got, err, *module, tc.positional, tc.module)
		}
	}
}

// TestNewFailedStep runs concord new with a go command that always fails:
// the error names the step, and the directory stays for inspection with
// every source file in it.
func TestNewFailedStep(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses a shell script as the go command")
	}
	bin := t.TempDir()
	writeTestFile(t, filepath.Join(bin, "go"), "#!/bin/sh\necho 'fake go: no network' >&2\nexit 1\n")
	if err := os.Chmod(filepath.Join(bin, "go"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	dir := filepath.Join(t.TempDir(), "hello")
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"new", dir, "--replace", repoRoot(t)}, &stdout, &stderr)
	if err == nil {
		t.Fatal("concord new succeeded with a failing go command")
	}
	for _, want := range []string{`step "go get -tool github.com/bufbuild/buf/cmd/buf@v1.75.0" failed`, "fake go: no network", dir + " is left as it is for inspection"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	for _, f := range []string{"go.mod", "Makefile", "proto/hello/v1/hello.proto", "main.go", "handler.go", "main_test.go"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s was not left for inspection: %v", f, err)
		}
	}
	if !strings.Contains(stderr.String(), "concord new: go get -tool") {
		t.Errorf("progress does not name the step: %q", stderr.String())
	}
}

// TestNewEndToEnd does what a new user does: concord new, make generate,
// go test, then builds the service, starts it, calls it as curl would and
// stops it with SIGTERM. It needs make, the go command and the Go module
// proxy (or a module cache that already holds buf and Concord's
// dependencies).
func TestNewEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a new module: skipped with -short")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("needs make")
	}
	// Bounded, and inside go test's own deadline.
	timeout := 8 * time.Minute
	if d, ok := t.Deadline(); ok && time.Until(d)-10*time.Second < timeout {
		timeout = time.Until(d) - 10*time.Second
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()

	dir := filepath.Join(t.TempDir(), "hello")
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"new", dir, "--replace", repoRoot(t)}, &stdout, &stderr); err != nil {
		t.Fatalf("concord new: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "make run") {
		t.Errorf("concord new did not say how to start the service: %q", stdout.String())
	}
	generated := readTree(t, filepath.Join(dir, "gen"))
	if len(generated) != 3 {
		t.Errorf("gen/ holds %d files, want 3 (protoc-gen-go, -connect-go, -concord): %v", len(generated), slices.Sorted(maps.Keys(generated)))
	}

	runIn(ctx, t, dir, "make", "generate")
	if again := readTree(t, filepath.Join(dir, "gen")); !maps.Equal(generated, again) {
		t.Error("make generate changed what concord new generated")
	}
	runIn(ctx, t, dir, "go", "test", "-count=1", "./...")
	runIn(ctx, t, dir, "go", "build", "-o", "bin/hello", ".")

	// Start it as `make run` does, on a free loopback port.
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "bin", "hello"), "-addr", "127.0.0.1:0", "-data", t.TempDir())
	cmd.Dir = dir
	logs, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(logs)
	addrRE := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`)
	var addr string
	var seen []string
	for addr == "" && lines.Scan() {
		seen = append(seen, lines.Text())
		if m := addrRE.FindStringSubmatch(lines.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the service never reported its address; logs:\n%s", strings.Join(seen, "\n"))
	}
	rest := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(logs)
		rest <- string(b)
	}()

	for _, tc := range []struct {
		body       string
		wantStatus int
		want       string
	}{
		{`{"name":"Ada"}`, http.StatusOK, `{"greeting":"Hello, Ada!"}`},
		{`{"name":""}`, http.StatusBadRequest, `"code":"invalid_argument","message":"validation error: name: must be at least 1 characters"`},
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/hello.v1.HelloService/Greet", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.wantStatus || !strings.Contains(string(got), tc.want) {
			t.Errorf("POST %s: %d %s, want %d and %s", tc.body, res.StatusCode, got, tc.wantStatus, tc.want)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the service exited with %v after SIGTERM; logs:\n%s", err, <-rest)
	}
	if logs := <-rest; !strings.Contains(logs, "draining") {
		t.Errorf("the service did not drain on SIGTERM; logs:\n%s", logs)
	}
}

// runIn runs a command in dir and fails the test with its output if it fails.
func runIn(ctx context.Context, t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// readTree returns the files under dir by path.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		files[path] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
