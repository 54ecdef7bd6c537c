package protodeps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	concordv1 "github.com/concordrpc/concord/proto/concord/v1"
)

const (
	// ProtovalidateModule is the Go module that carries validate.proto.
	ProtovalidateModule = "github.com/bufbuild/protovalidate"
	// ProtovalidateVersion is the pinned version of ProtovalidateModule.
	ProtovalidateVersion = "v1.2.2"
	// protovalidateSum is the go.sum hash of ProtovalidateModule@ProtovalidateVersion.
	protovalidateSum = "h1:2H/9/Kr97etSRqW3IJjTTb09z+zutkK2GDhDRbOnqr4="
	// validateInModule is validate.proto's path inside the module.
	validateInModule = "proto/protovalidate/buf/validate/validate.proto"
	// ValidateProtoPath is validate.proto's import path.
	ValidateProtoPath = "buf/validate/validate.proto"
)

// Options select what Write writes.
type Options struct {
	// SkipConcord leaves out concord/v1/options.proto, for a workspace (like
	// Concord's own) whose sources already contain it.
	SkipConcord bool
}

// Write materialises the include directory dir. It creates dir if needed and
// overwrites the files it owns; it leaves other files alone. It needs the go
// command on PATH and either a module cache that holds the module or access to
// the Go module proxy.
func Write(ctx context.Context, dir string, opts Options) error {
	src, err := protovalidateDir(ctx)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(src, filepath.FromSlash(validateInModule)))
	if err != nil {
		return fmt.Errorf("protodeps: read validate.proto from module cache: %w", err)
	}
	if err := writeFile(dir, ValidateProtoPath, data); err != nil {
		return err
	}
	if opts.SkipConcord {
		return nil
	}
	return writeFile(dir, concordv1.OptionsProtoPath, concordv1.OptionsProtoSource())
}

func writeFile(dir, importPath string, data []byte) error {
	path := filepath.Join(dir, filepath.FromSlash(importPath))
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil // unchanged: keep the mtime stable for build tools
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("protodeps: %w", err)
	}
	// Files in the include directory are inputs, not sources to edit.
	if err := os.WriteFile(path+".tmp", data, 0o644); err != nil {
		return fmt.Errorf("protodeps: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("protodeps: %w", err)
	}
	return nil
}

// protovalidateDir downloads (or finds in the module cache) the pinned
// protovalidate module, checks its hash and returns its directory.
func protovalidateDir(ctx context.Context) (string, error) {
	tmp, err := os.MkdirTemp("", "concord-protodeps-")
	if err != nil {
		return "", fmt.Errorf("protodeps: %w", err)
	}
	defer os.RemoveAll(tmp)
	// Run outside any module so the caller's go.mod and go.sum are untouched.
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", ProtovalidateModule+"@"+ProtovalidateVersion)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct {
		Dir   string
		Sum   string
		Error string
	}
	if jerr := json.Unmarshal(out, &info); jerr != nil && err == nil {
		err = jerr
	}
	if info.Error != "" {
		err = errors.New(info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("protodeps: go mod download %s@%s: %w %s", ProtovalidateModule, ProtovalidateVersion, err, bytes.TrimSpace(stderr.Bytes()))
	}
	if info.Sum != protovalidateSum {
		return "", fmt.Errorf("protodeps: %s@%s has hash %q, want %q", ProtovalidateModule, ProtovalidateVersion, info.Sum, protovalidateSum)
	}
	return info.Dir, nil
}
