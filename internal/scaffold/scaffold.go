package scaffold

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"go/format"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
	"unicode"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

const (
	// ConcordModule is the module path of Concord.
	ConcordModule = "github.com/concordrpc/concord"
	// BufVersion is the version of buf pinned in the new module's tools/go.mod.
	BufVersion = "v1.75.0"
	// BufTool is the package of buf's command.
	BufTool = "github.com/bufbuild/buf/cmd/buf"
	// GoVersion is the go directive of the new module: the one Concord needs.
	GoVersion = "1.26.0"
	// ReplacedVersion is the version the new module requires Concord at
	// when a replace directive points at a local checkout.
	ReplacedVersion = "v0.0.0"
)

// Tools are the tool lines of the new module's go.mod: the protoc plugins
// that buf.gen.yaml runs through `go tool`, and the concord CLI (for
// `go tool concord proto-deps`). Their versions come from Concord's own
// requirements when `go mod tidy` resolves them.
var Tools = []string{
	"connectrpc.com/connect/v2/cmd/protoc-gen-connect-go",
	ConcordModule + "/cmd/concord",
	ConcordModule + "/cmd/protoc-gen-concord",
	"google.golang.org/protobuf/cmd/protoc-gen-go",
}

// ErrInvalid matches (with errors.Is) the errors that report bad input to
// Render, ServiceName, ServiceFromDir and CheckModulePath. Their messages
// name the input and the rule it breaks, without a package prefix, so that
// a command can show them as they are.
var ErrInvalid = errors.New("scaffold: invalid input")

type invalidError struct{ msg string }

func invalidf(format string, args ...any) error {
	return invalidError{fmt.Sprintf(format, args...)}
}

func (e invalidError) Error() string        { return e.msg }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }

// Config describes the module to render.
type Config struct {
	// Module is the new module's path, like "example.com/hello".
	Module string
	// Service is the proto service name, as returned by ServiceName: an
	// UpperCamel identifier ending in "Service".
	Service string
	// ConcordVersion is the version of Concord the module requires.
	ConcordVersion string
	// ConcordReplace, if set, is the absolute path of a Concord checkout
	// that replaces the required version (which is then ReplacedVersion).
	ConcordReplace string
}

// File is one rendered file.
type File struct {
	// Path is slash-separated and relative to the module root.
	Path string
	Data []byte
	// NeedsGenerated marks Go sources that import generated code: they
	// only build (and `go mod tidy` only succeeds) once gen/ exists.
	NeedsGenerated bool
}

// serviceRE is an UpperCamel identifier: valid in Go and protobuf, and
// exported in Go. Underscores are left out because buf lint's
// SERVICE_PASCAL_CASE rejects them.
var serviceRE = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)

// ServiceName checks a service name and adds the "Service" suffix if it is
// missing: "Hello" and "HelloService" both give "HelloService".
func ServiceName(name string) (string, error) {
	if !serviceRE.MatchString(name) {
		return "", invalidf("service name %q must be an UpperCamel identifier of ASCII letters and digits, like HelloService", name)
	}
	if !strings.HasSuffix(name, "Service") {
		name += "Service"
	}
	if name == "Service" {
		return "", invalidf("service name %q needs a name before the Service suffix, like HelloService", name)
	}
	return name, nil
}

// ServiceFromDir derives a service name from a directory's base name:
// "hello" gives HelloService, "order-book" OrderBookService.
func ServiceFromDir(base string) (string, error) {
	var b strings.Builder
	for _, word := range strings.FieldsFunc(base, func(r rune) bool { return !isASCIIAlnum(r) }) {
		b.WriteString(strings.ToUpper(word[:1]) + word[1:])
	}
	name, err := ServiceName(b.String())
	if err != nil {
		return "", invalidf("cannot derive a service name from the directory name %q", base)
	}
	return name, nil
}

func isASCIIAlnum(r rune) bool {
	return r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r))
}

// CheckModulePath reports whether p is a module path that `go get` could
// fetch, like example.com/hello or github.com/you/hello
// (golang.org/x/mod/module.CheckPath).
func CheckModulePath(p string) error {
	if err := module.CheckPath(p); err != nil {
		return invalidf("%v", err)
	}
	return nil
}

// names are the identifiers the templates use, all derived from Config.
type names struct {
	Config
	Base          string // Hello
	Lower         string // hello: proto package, discovery name, binary
	ProtoPackage  string // hello.v1
	ProtoPath     string // hello/v1/hello.proto, relative to proto/
	GoPackage     string // hellov1
	GoImport      string // example.com/hello/gen/hello/v1
	Procedure     string // /hello.v1.HelloService/Greet
	BufVersion    string
	ConcordModule string
}

func newNames(c Config) (names, error) {
	if err := CheckModulePath(c.Module); err != nil {
		return names{}, err
	}
	service, err := ServiceName(c.Service)
	if err != nil {
		return names{}, err
	}
	if service != c.Service {
		return names{}, invalidf("service name %q does not end in Service", c.Service)
	}
	if !semver.IsValid(c.ConcordVersion) {
		return names{}, invalidf("Concord version %q is not a semantic version", c.ConcordVersion)
	}
	if c.ConcordReplace != "" && !filepath.IsAbs(c.ConcordReplace) {
		return names{}, invalidf("replace path %q is not absolute", c.ConcordReplace)
	}
	base := strings.TrimSuffix(service, "Service")
	lower := strings.ToLower(base)
	return names{
		Config:        c,
		Base:          base,
		Lower:         lower,
		ProtoPackage:  lower + ".v1",
		ProtoPath:     lower + "/v1/" + lower + ".proto",
		GoPackage:     lower + "v1",
		GoImport:      c.Module + "/gen/" + lower + "/v1",
		Procedure:     "/" + lower + ".v1." + service + "/Greet",
		BufVersion:    BufVersion,
		ConcordModule: ConcordModule,
	}, nil
}

//go:embed templates/*.tmpl
var templateFS embed.FS

var templates = template.Must(template.New("").ParseFS(templateFS, "templates/*.tmpl"))

// Module is a rendered module.
type Module struct {
	// Files are the module's files, go.mod and tools/go.mod included.
	Files []File
	// Procedure is the Connect procedure path of the service's one method,
	// like "/hello.v1.HelloService/Greet".
	Procedure string
	// Binary is the name `make run` gives the service's binary.
	Binary string
	// ProtoPath is the path of the .proto file, relative to the module.
	ProtoPath string
}

// Render returns the module's files, or an error matching ErrInvalid if c
// is not valid.
func Render(c Config) (*Module, error) {
	n, err := newNames(c)
	if err != nil {
		return nil, err
	}
	goMod, err := n.goMod()
	if err != nil {
		return nil, err
	}
	toolsMod, err := n.toolsGoMod()
	if err != nil {
		return nil, err
	}
	files := []File{{Path: "go.mod", Data: goMod}, {Path: "tools/go.mod", Data: toolsMod}}
	for _, f := range []struct {
		tmpl, path     string
		needsGenerated bool
	}{
		{"buf.yaml.tmpl", "buf.yaml", false},
		{"buf.gen.yaml.tmpl", "buf.gen.yaml", false},
		{"service.proto.tmpl", "proto/" + n.ProtoPath, false},
		{"Makefile.tmpl", "Makefile", false},
		{"README.md.tmpl", "README.md", false},
		{"gitignore.tmpl", ".gitignore", false},
		{"main.go.tmpl", "main.go", true},
		{"handler.go.tmpl", "handler.go", true},
		{"main_test.go.tmpl", "main_test.go", true},
	} {
		var b bytes.Buffer
		if err := templates.ExecuteTemplate(&b, f.tmpl, n); err != nil {
			return nil, fmt.Errorf("scaffold: %s: %w", f.tmpl, err)
		}
		data := b.Bytes()
		if strings.HasSuffix(f.path, ".go") {
			if data, err = format.Source(data); err != nil {
				return nil, fmt.Errorf("scaffold: %s: %w", f.tmpl, err)
			}
		}
		files = append(files, File{Path: f.path, Data: data, NeedsGenerated: f.needsGenerated})
	}
	return &Module{Files: files, Procedure: n.Procedure, Binary: n.Lower, ProtoPath: "proto/" + n.ProtoPath}, nil
}

// goMod returns go.mod: Concord required (and replaced by a checkout if
// asked), and the code generators as tools. `go mod tidy` then resolves
// the tools' modules from Concord's own requirements, so their versions
// match the runtime; no `go get` is needed (it would ask the proxy for the
// replaced version, which does not exist).
func (n names) goMod() ([]byte, error) {
	f := new(modfile.File)
	version := n.ConcordVersion
	if n.ConcordReplace != "" {
		version = ReplacedVersion
	}
	err := errors.Join(f.AddModuleStmt(n.Module), f.AddGoStmt(GoVersion), f.AddRequire(ConcordModule, version))
	if n.ConcordReplace != "" {
		err = errors.Join(err, f.AddReplace(ConcordModule, "", n.ConcordReplace, ""))
	}
	for _, t := range Tools {
		err = errors.Join(err, f.AddTool(t))
	}
	if err != nil {
		return nil, fmt.Errorf("scaffold: go.mod: %w", err)
	}
	return f.Format()
}

// toolsGoMod returns tools/go.mod before `go get -tool` adds buf to it:
// buf lives in its own module file so that its many dependencies never
// change the service's.
func (n names) toolsGoMod() ([]byte, error) {
	f := new(modfile.File)
	if err := errors.Join(f.AddModuleStmt(n.Module+"/tools"), f.AddGoStmt(GoVersion)); err != nil {
		return nil, fmt.Errorf("scaffold: tools/go.mod: %w", err)
	}
	return f.Format()
}
