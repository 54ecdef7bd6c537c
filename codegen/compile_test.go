package codegen_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	gengo "google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/concordrpc/concord/codegen"
)

// goldenModule is the Go module path under which every golden case puts
// its go_package, so that TestGeneratedCodeCompiles can build all of them as
// one module.
const goldenModule = "example.com"

// TestGeneratedCodeCompiles builds the golden output of every successful
// case together with what protoc-gen-go and protoc-gen-connect-go generate
// for it, as one module in a Go workspace with Concord's, so that the
// compiler, not a reader, checks name collisions and import aliasing.
func TestGeneratedCodeCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go code")
	}
	t.Parallel()
	repo := repoRoot(t)
	mod := t.TempDir()
	for _, name := range goldenCases(t) {
		dir := filepath.Join("testdata", name)
		want := readWant(t, dir)
		if _, fails := want[errorFile]; fails {
			continue
		}
		req := compileCase(t, dir)
		req.Parameter = nil // paths=import: file names are Go import paths
		var concord []string
		for _, f := range runGoGen(t, req) {
			writeModuleFile(t, mod, f)
		}
		for _, f := range runConnectGen(t, repo, req) {
			writeModuleFile(t, mod, f)
		}
		for _, f := range runConcordGen(t, req) {
			writeModuleFile(t, mod, f)
			concord = append(concord, f.GetContent())
		}
		// Only the file names depend on the paths option; the build checks
		// the golden code itself.
		var golden []string
		for _, content := range want {
			golden = append(golden, content)
		}
		slices.Sort(golden)
		slices.Sort(concord)
		if diff := cmp.Diff(golden, concord); diff != "" {
			t.Fatalf("%s: output with paths=import differs from the golden files (-want +got):\n%s", name, diff)
		}
	}
	goLine := goDirective(t, repo)
	writeFile(t, filepath.Join(mod, "go.mod"), "module "+goldenModule+"\n\n"+goLine+"\n")
	writeFile(t, filepath.Join(mod, "go.work"), goLine+"\n\nuse (\n\t.\n\t"+repo+"\n)\n")
	cmd := exec.CommandContext(t.Context(), "go", "build", "./...")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "GOWORK="+filepath.Join(mod, "go.work"), "GOFLAGS=", "GOPROXY=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build of the generated code: %v\n%s", err, out)
	}
}

// runGoGen runs protoc-gen-go's generator in process.
func runGoGen(t *testing.T, req *pluginpb.CodeGeneratorRequest) []*pluginpb.CodeGeneratorResponse_File {
	t.Helper()
	plugin, err := protogen.Options{}.New(req)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range plugin.Files {
		if f.Generate {
			gengo.GenerateFile(plugin, f)
		}
	}
	return responseFiles(t, "protoc-gen-go", plugin.Response())
}

// runConnectGen runs protoc-gen-connect-go, as pinned in Concord's go.mod.
func runConnectGen(t *testing.T, repo string, req *pluginpb.CodeGeneratorRequest) []*pluginpb.CodeGeneratorResponse_File {
	t.Helper()
	in, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "go", "tool", "protoc-gen-connect-go")
	cmd.Dir = repo
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("protoc-gen-connect-go: %v\n%s", err, stderr.Bytes())
	}
	resp := &pluginpb.CodeGeneratorResponse{}
	if err := proto.Unmarshal(out, resp); err != nil {
		t.Fatal(err)
	}
	return responseFiles(t, "protoc-gen-connect-go", resp)
}

// runConcordGen runs protoc-gen-concord's generator in process.
func runConcordGen(t *testing.T, req *pluginpb.CodeGeneratorRequest) []*pluginpb.CodeGeneratorResponse_File {
	t.Helper()
	plugin, err := codegen.Options().New(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := codegen.Generate(plugin); err != nil {
		t.Fatal(err)
	}
	return responseFiles(t, "protoc-gen-concord", plugin.Response())
}

func responseFiles(t *testing.T, plugin string, resp *pluginpb.CodeGeneratorResponse) []*pluginpb.CodeGeneratorResponse_File {
	t.Helper()
	if resp.Error != nil {
		t.Fatalf("%s: %s", plugin, resp.GetError())
	}
	return resp.GetFile()
}

// writeModuleFile writes a file generated with paths=import, whose name is
// its Go import path, into the module rooted at mod.
func writeModuleFile(t *testing.T, mod string, f *pluginpb.CodeGeneratorResponse_File) {
	t.Helper()
	rel, ok := strings.CutPrefix(f.GetName(), goldenModule+"/")
	if !ok {
		t.Fatalf("generated file %s is outside module %s: give the case a go_package under it", f.GetName(), goldenModule)
	}
	writeFile(t, filepath.Join(mod, filepath.FromSlash(rel)), f.GetContent())
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// repoRoot returns the root of Concord's module: the tests run in codegen/.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

// goDirective returns the go line of Concord's go.mod, which the workspace
// and the module of generated code must match or exceed.
func goDirective(t *testing.T, repo string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "go ") {
			return line
		}
	}
	t.Fatal("go.mod has no go directive")
	return ""
}
