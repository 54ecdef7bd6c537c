package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"

	"github.com/concordrpc/concord/internal/protodeps"
	"github.com/concordrpc/concord/internal/scaffold"
)

// newCmd writes a new Go module that serves one Concord service, then runs
// the code generators in it, so that it builds, tests and serves at once.
// Bad input is reported before anything is written; a failing later step is
// reported by name, and the directory is left for inspection.
func newCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("new", flag.ContinueOnError)
	fset.SetOutput(stderr)
	modulePath := fset.String("module", "", "module path of the new module (default example.com/<base name of DIR>)")
	service := fset.String("service", "", `proto service name, UpperCamel; "Service" is appended if missing (default from DIR: hello gives HelloService)`)
	replace := fset.String("replace", "", "path of a Concord checkout to build against, instead of the version this concord was built from")
	positional, err := parseInterspersed(fset, args)
	if err != nil {
		return usageError{err.Error()}
	}
	if len(positional) != 1 {
		return usageError{"new needs exactly one DIR"}
	}
	bi, ok := debug.ReadBuildInfo()
	plan, err := planNew(positional[0], *modulePath, *service, *replace, bi, ok)
	if err != nil {
		return err
	}
	return plan.execute(ctx, stdout, stderr)
}

// newPlan is a checked `concord new`: everything execute needs, rendered.
type newPlan struct {
	dir string // absolute
	cfg scaffold.Config
	mod *scaffold.Module
}

// planNew checks every input and renders the module, writing nothing.
func planNew(dir, modulePath, service, replace string, bi *debug.BuildInfo, haveBuildInfo bool) (*newPlan, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("new: %w", err)
	}
	if err := checkEmptyDir(abs); err != nil {
		return nil, err
	}
	base := filepath.Base(abs)
	if modulePath == "" {
		modulePath = "example.com/" + base
		if err := scaffold.CheckModulePath(modulePath); err != nil {
			return nil, fmt.Errorf("new: cannot derive a module path from the directory name %q (%v); pass --module", base, err)
		}
	} else if err := scaffold.CheckModulePath(modulePath); err != nil {
		return nil, fmt.Errorf("new: --module: %w", err)
	}
	if service == "" {
		if service, err = scaffold.ServiceFromDir(base); err != nil {
			return nil, fmt.Errorf("new: %w; pass --service", err)
		}
	} else if service, err = scaffold.ServiceName(service); err != nil {
		return nil, fmt.Errorf("new: --service: %w", err)
	}
	cfg := scaffold.Config{Module: modulePath, Service: service, ConcordVersion: scaffold.ReplacedVersion}
	if replace != "" {
		if cfg.ConcordReplace, err = checkConcordCheckout(replace); err != nil {
			return nil, err
		}
	} else if cfg.ConcordVersion, err = concordVersion(bi, haveBuildInfo); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("go"); err != nil {
		return nil, fmt.Errorf("new: the go command is needed to generate code and resolve dependencies: %w", err)
	}
	mod, err := scaffold.Render(cfg)
	if err != nil {
		return nil, fmt.Errorf("new: %w", err)
	}
	return &newPlan{dir: abs, cfg: cfg, mod: mod}, nil
}

// checkEmptyDir accepts a directory that does not exist yet or is empty.
func checkEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		if fi, serr := os.Stat(dir); serr == nil && !fi.IsDir() {
			return fmt.Errorf("new: %s exists and is not a directory", dir)
		}
		return fmt.Errorf("new: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("new: %s exists and is not empty; concord new writes only into a new or empty directory", dir)
	}
	return nil
}

// checkConcordCheckout returns the absolute path of dir if its go.mod
// declares Concord's module.
func checkConcordCheckout(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("new: --replace: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(abs, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("new: --replace %s is not a Concord checkout: %w", dir, err)
	}
	if got := modfile.ModulePath(data); got != scaffold.ConcordModule {
		return "", fmt.Errorf("new: --replace %s is not a Concord checkout: its go.mod declares module %q, not %s", dir, got, scaffold.ConcordModule)
	}
	return abs, nil
}

// concordVersion returns the version of Concord this binary was built
// from: the main module's version (go install or go run of
// github.com/concordrpc/concord/cmd/concord@vX), or the version of the
// dependency (go tool concord in another module). A build from a local
// checkout has no version that another module could require.
func concordVersion(bi *debug.BuildInfo, ok bool) (string, error) {
	var v string
	if ok {
		if bi.Main.Path == scaffold.ConcordModule {
			v = bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == scaffold.ConcordModule && d.Replace == nil {
				v = d.Version
			}
		}
	}
	// "+dirty" marks a build from a modified checkout.
	if semver.IsValid(v) && semver.Build(v) == "" {
		return v, nil
	}
	return "", fmt.Errorf("new: this concord was built from a local checkout (its version is %q), so there is no published Concord version for the new module to require; pass --replace with the path of a Concord checkout", v)
}

// parseInterspersed parses flags that come before or after positional
// arguments, as in "concord new DIR --replace PATH"; after "--" every
// argument is positional.
func parseInterspersed(fset *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fset.Parse(args); err != nil {
			return nil, err
		}
		rest := fset.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// execute writes the module and generates its code. The Go sources that
// import generated code are written after generation (go mod tidy fails
// on imports that do not exist yet), or after a failed step, so that the
// directory left for inspection is complete.
func (p *newPlan) execute(ctx context.Context, stdout, stderr io.Writer) error {
	progress := func(format string, args ...any) {
		fmt.Fprintf(stderr, "concord new: "+format+"\n", args...)
	}
	var early, late []scaffold.File
	for _, f := range p.mod.Files {
		if f.NeedsGenerated {
			late = append(late, f)
		} else {
			early = append(early, f)
		}
	}
	progress("writing module %s (service %s) to %s", p.cfg.Module, p.cfg.Service, p.dir)
	if err := writeFiles(p.dir, early); err != nil {
		return p.failed("writing files", err)
	}
	steps := []struct {
		name string
		hint string
		run  func() error
	}{
		{
			"go get -tool " + scaffold.BufTool + "@" + scaffold.BufVersion, " (in tools/)",
			func() error {
				return goCmd(ctx, filepath.Join(p.dir, "tools"), "get", "-tool", scaffold.BufTool+"@"+scaffold.BufVersion)
			},
		},
		{"go mod tidy", "", func() error { return goCmd(ctx, p.dir, "mod", "tidy") }},
		{
			"concord proto-deps .build/protodeps", "",
			func() error {
				return protodeps.Write(ctx, filepath.Join(p.dir, ".build", "protodeps"), protodeps.Options{})
			},
		},
		{
			"buf generate", " (the first run builds buf, which can take a few minutes)",
			func() error { return goCmd(ctx, p.dir, "tool", "-modfile=tools/go.mod", "buf", "generate") },
		},
	}
	var stepErr error
	for _, s := range steps {
		progress("%s%s", s.name, s.hint)
		if err := s.run(); err != nil {
			stepErr = p.failed(s.name, err)
			break
		}
	}
	if err := writeFiles(p.dir, late); err != nil {
		return errors.Join(stepErr, p.failed("writing Go sources", err))
	}
	if stepErr != nil {
		return stepErr
	}
	progress("go mod tidy")
	if err := goCmd(ctx, p.dir, "mod", "tidy"); err != nil {
		return p.failed("go mod tidy", err)
	}
	fmt.Fprintf(stdout, `Created %s in %s. Start it with:

  cd %s
  make run

and call it from another terminal:

  curl -sS -H 'Content-Type: application/json' -d '{"name":"Ada"}' \
    http://127.0.0.1:8080%s
`, p.cfg.Module, p.dir, p.dir, p.mod.Procedure)
	return nil
}

// failed reports a failed step of execute.
func (p *newPlan) failed(step string, err error) error {
	return fmt.Errorf("new: step %q failed: %w\n\n%s is left as it is for inspection; fix the cause, then run `make generate && go mod tidy` there, or remove it and run concord new again", step, err, p.dir)
}

func writeFiles(dir string, files []scaffold.File) error {
	for _, f := range files {
		path := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, f.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// goCmd runs the go command in dir, outside any workspace (a go.work
// above dir would not list the new module), and returns its output with
// the error if it fails.
func goCmd(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}
