package codegen_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	concordv1 "github.com/concordrpc/concord/proto/concord/v1"
)

// TestBufGenerate runs every golden case through the real `buf generate`
// with protoc-gen-concord as a local plugin, each in its own workspace: a
// failing case must make buf exit non-zero with every line of its error.txt
// on stderr, and a successful one must write its golden files.
func TestBufGenerate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs buf")
	}
	t.Parallel()
	repo := repoRoot(t)
	buf := goToolPath(t, repo, "buf", "-modfile=tools/go.mod")
	plugin := goToolPath(t, repo, "protoc-gen-concord")
	for _, name := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join("testdata", name)
			want := readWant(t, dir)
			ws := bufWorkspace(t, plugin, dir)
			cmd := exec.CommandContext(t.Context(), buf, "generate", "--template", "buf.gen.yaml")
			cmd.Dir = ws
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()

			if wantErr, fails := want[errorFile]; fails {
				var exit *exec.ExitError
				if !errors.As(err, &exit) {
					t.Fatalf("buf generate: %v; want a non-zero exit with:\n%s", err, wantErr)
				}
				for line := range strings.Lines(wantErr) {
					if line = strings.TrimSpace(line); !strings.Contains(stderr.String(), line) {
						t.Errorf("buf's stderr lacks %q; it is:\n%s", line, stderr.Bytes())
					}
				}
				if got := readTree(t, filepath.Join(ws, "gen")); len(got) != 0 {
					t.Errorf("buf generate wrote files despite the error: %v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("buf generate: %v\n%s%s", err, stdout.Bytes(), stderr.Bytes())
			}
			got := map[string]string{}
			for name, content := range readTree(t, filepath.Join(ws, "gen")) {
				got[name+goldenSuffix] = content
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("buf generate output differs from %s (-want +got):\n%s", filepath.Join(dir, wantDir), diff)
			}
		})
	}
}

// bufWorkspace returns a buf workspace holding the .proto files of the
// case in dir and concord/v1/options.proto, with a template that runs the
// protoc-gen-concord binary plugin into gen/.
func bufWorkspace(t *testing.T, plugin, dir string) string {
	t.Helper()
	ws := t.TempDir()
	for _, name := range caseProtoFiles(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(ws, filepath.FromSlash(name)), string(b))
	}
	writeFile(t, filepath.Join(ws, filepath.FromSlash(concordv1.OptionsProtoPath)), string(concordv1.OptionsProtoSource()))
	writeFile(t, filepath.Join(ws, "buf.yaml"), "version: v2\n")
	writeFile(t, filepath.Join(ws, "buf.gen.yaml"), `version: v2
plugins:
  - local: `+strconv.Quote(plugin)+`
    out: gen
    opt: `+caseParameter(t, dir)+`
`)
	return ws
}

// goToolPath returns the executable of a tool pinned in Concord's go.mod,
// or in the go.mod that flags name, as built and cached by `go tool`, so
// that each case runs the tool without paying for the go command again.
func goToolPath(t *testing.T, repo, tool string, flags ...string) string {
	t.Helper()
	args := append(append([]string{"tool"}, flags...), "-n", tool)
	cmd := exec.CommandContext(t.Context(), "go", args...)
	cmd.Dir = repo
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	path := strings.TrimSpace(string(out))
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	return path
}
