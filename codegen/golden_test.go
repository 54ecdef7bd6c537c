package codegen_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/bufbuild/protocompile"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/concordrpc/concord/codegen"
	concordv1 "github.com/concordrpc/concord/proto/concord/v1"
)

// Each directory under testdata is a golden case: .proto inputs, an
// optional parameter.txt holding the plugin parameter (default
// defaultParameter), and under want/ what protoc-gen-concord must produce:
// each generated file with a .golden suffix, or error.txt when generation
// must fail. `go test ./codegen -run TestGolden -update` rewrites want/.
var update = flag.Bool("update", false, "rewrite the golden files under testdata/*/want")

const (
	wantDir          = "want"
	goldenSuffix     = ".golden"
	errorFile        = "error.txt"
	parameterFile    = "parameter.txt"
	defaultParameter = "paths=source_relative"
)

// errorLineRE is the shape of every problem Generate reports: file, then
// service and, for a method's option, the method, or the message of an
// event.
var errorLineRE = regexp.MustCompile(`^[\w/.-]+\.proto: (service [\w.]+(, method \w+)?|message [\w.]+): \S.*$`)

func TestGolden(t *testing.T) {
	t.Parallel()
	for _, name := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join("testdata", name)
			got := goldenOutput(t, dir)
			if *update {
				writeWant(t, dir, got)
				return
			}
			want := readWant(t, dir)
			names := map[string]bool{}
			for n := range want {
				names[n] = true
			}
			for n := range got {
				names[n] = true
			}
			for _, n := range slices.Sorted(maps.Keys(names)) {
				w, inWant := want[n]
				g, inGot := got[n]
				switch {
				case !inWant:
					t.Errorf("unexpected output %s (run go test ./codegen -run TestGolden -update):\n%s", n, g)
				case !inGot:
					t.Errorf("missing output %s", n)
				default:
					if diff := cmp.Diff(w, g); diff != "" {
						t.Errorf("%s differs from %s (-want +got):\n%s", n, filepath.Join(dir, wantDir, n), diff)
					}
				}
			}
		})
	}
}

// TestGenerateReportsEveryError checks that Generate reports every problem
// in every file, joined, and generates nothing, not even for the services
// that have none.
func TestGenerateReportsEveryError(t *testing.T) {
	t.Parallel()
	req := compileCase(t, filepath.Join("testdata", "error_many"))
	plugin, err := codegen.Options().New(req)
	if err != nil {
		t.Fatal(err)
	}
	err = codegen.Generate(plugin)
	if err == nil {
		t.Fatal("Generate succeeded, want errors")
	}
	var leaves []string
	var walk func(error)
	walk = func(err error) {
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range joined.Unwrap() {
				walk(e)
			}
			return
		}
		leaves = append(leaves, err.Error())
	}
	walk(err)
	want := []string{
		`many/v1/a.proto: service many.v1.AlphaService, method Get: timeout "-1s" is negative`,
		`many/v1/a.proto: service many.v1.AlphaService, method Get: retry needs an idempotent method: set option idempotency_level = IDEMPOTENT or NO_SIDE_EFFECTS`,
		`many/v1/a.proto: service many.v1.AlphaService, method Watch: circuit_breaker applies to unary methods only`,
		`many/v1/a.proto: service many.v1.AlphaService, method Watch: circuit_breaker.failure_ratio is 1.5; it must be in (0, 1]`,
		`many/v1/b.proto: service many.v1.BetaService, method Try: (concord.v1.tcc).confirm names "Confirm", which is not a method of BetaService`,
		`many/v1/b.proto: service many.v1.BetaService, method Try: (concord.v1.tcc).cancel is required`,
		`many/v1/b.proto: service many.v1.GammaService: (concord.v1.service).name "gamma service": use letters, digits, '.', '-' and '_' only`,
		`many/v1/b.proto: service many.v1.GammaService, method Get: rate_limit.leaky_bucket.queue is 0; it must be at least 1`,
		`many/v1/b.proto: service many.v1.GammaService, method Get: rate_limit.key "header:": "" is not a valid header name`,
	}
	if diff := cmp.Diff(want, leaves); diff != "" {
		t.Errorf("reported errors (-want +got):\n%s", diff)
	}
	if files := plugin.Response().GetFile(); len(files) != 0 {
		t.Errorf("generated %d files despite errors, want none", len(files))
	}
}

// goldenCases lists the case directories under testdata.
func goldenCases(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	for _, e := range entries {
		if e.IsDir() {
			cases = append(cases, e.Name())
		}
	}
	if len(cases) == 0 {
		t.Fatal("no golden cases under testdata")
	}
	return cases
}

// goldenOutput runs the plugin on the case in dir and returns what want/
// must hold: the generated files, or error.txt.
func goldenOutput(t *testing.T, dir string) map[string]string {
	t.Helper()
	plugin, err := codegen.Options().New(compileCase(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	genErr := codegen.Generate(plugin)
	resp := plugin.Response()
	if resp.Error != nil {
		t.Fatalf("plugin response error: %s", resp.GetError())
	}
	if genErr != nil {
		if n := len(resp.GetFile()); n != 0 {
			t.Errorf("Generate failed but the response holds %d files", n)
		}
		for line := range strings.Lines(genErr.Error()) {
			if line = strings.TrimSuffix(line, "\n"); !errorLineRE.MatchString(line) {
				t.Errorf("error %q does not name the file and the service and method or the message", line)
			}
		}
		return map[string]string{errorFile: genErr.Error() + "\n"}
	}
	out := make(map[string]string, len(resp.GetFile()))
	for _, f := range resp.GetFile() {
		out[f.GetName()+goldenSuffix] = f.GetContent()
	}
	return out
}

// compileCase compiles the .proto files of the case in dir and returns the
// request protoc or buf would send: every .proto file in dir to generate,
// all files in dependency order, and the case's parameter.
func compileCase(t *testing.T, dir string) *pluginpb.CodeGeneratorRequest {
	t.Helper()
	return compileRequest(t, dir, caseProtoFiles(t, dir), caseParameter(t, dir))
}

// caseProtoFiles returns the .proto files of the case in dir, relative to
// dir.
func caseProtoFiles(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && p == filepath.Join(dir, wantDir):
			return filepath.SkipDir
		case !d.IsDir() && strings.HasSuffix(p, ".proto"):
			rel, err := filepath.Rel(dir, p)
			names = append(names, filepath.ToSlash(rel))
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatalf("%s holds no .proto file", dir)
	}
	return names
}

// caseParameter returns the plugin parameter of the case in dir.
func caseParameter(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, parameterFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return defaultParameter
	case err != nil:
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// compileRequest compiles files (paths relative to dir) with protocompile,
// serving concord/v1/options.proto from concordv1 and descriptor.proto from
// the standard imports.
func compileRequest(t *testing.T, dir string, files []string, parameter string) *pluginpb.CodeGeneratorRequest {
	t.Helper()
	concordOptions := protocompile.ResolverFunc(func(p string) (protocompile.SearchResult, error) {
		if p != concordv1.OptionsProtoPath {
			return protocompile.SearchResult{}, fs.ErrNotExist
		}
		return protocompile.SearchResult{Source: bytes.NewReader(concordv1.OptionsProtoSource())}, nil
	})
	compiler := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(protocompile.CompositeResolver{
			concordOptions,
			&protocompile.SourceResolver{ImportPaths: []string{dir}},
		}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	compiled, err := compiler.Compile(context.Background(), files...)
	if err != nil {
		t.Fatalf("compile %s: %v", dir, err)
	}
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate: files,
		Parameter:      proto.String(parameter),
	}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		req.ProtoFile = append(req.ProtoFile, protodesc.ToFileDescriptorProto(fd))
	}
	for _, f := range compiled {
		add(f)
	}
	// Send the request through the wire format, as protoc does: options
	// arrive as bytes and are parsed with the extensions this binary links.
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	req = &pluginpb.CodeGeneratorRequest{}
	if err := proto.Unmarshal(b, req); err != nil {
		t.Fatal(err)
	}
	return req
}

// readWant returns the files under dir/want, by slash-separated path.
func readWant(t *testing.T, dir string) map[string]string {
	t.Helper()
	return readTree(t, filepath.Join(dir, wantDir))
}

// readTree returns the files under root by slash-separated relative path;
// a missing root is an empty tree.
func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return filepath.SkipDir
		}
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// writeWant replaces dir/want with got.
func writeWant(t *testing.T, dir string, got map[string]string) {
	t.Helper()
	root := filepath.Join(dir, wantDir)
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	for name, content := range got {
		p := filepath.Join(root, filepath.FromSlash(path.Clean(name)))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
