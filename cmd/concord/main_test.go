package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	concordv1 "github.com/concordrpc/concord/proto/concord/v1"
)

func TestProtoDeps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "include")
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"proto-deps", dir}, &stdout, &stderr); err != nil {
		t.Fatalf("proto-deps: %v\n%s", err, stderr.String())
	}
	validate, err := os.ReadFile(filepath.Join(dir, "buf", "validate", "validate.proto"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(validate, []byte("package buf.validate;")) {
		t.Fatal("validate.proto does not declare package buf.validate")
	}
	options, err := os.ReadFile(filepath.Join(dir, "concord", "v1", "options.proto"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(options, concordv1.OptionsProtoSource()) {
		t.Fatal("options.proto differs from the embedded source")
	}
	// -skip-concord leaves options.proto out.
	dir2 := t.TempDir()
	if err := run(t.Context(), []string{"proto-deps", "-skip-concord", dir2}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir2, "concord")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("-skip-concord wrote concord/: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"proto-deps"}, {"proto-deps", "a", "b"}, {"proto-deps", "-nope", "a"}} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), args, &stdout, &stderr)
		var uerr usageError
		if !errors.As(err, &uerr) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"version"}, &stdout, &stdout); err != nil || strings.TrimSpace(stdout.String()) == "" {
		t.Fatalf("version: %v %q", err, stdout.String())
	}
}
