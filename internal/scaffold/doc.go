// Package scaffold renders the files of a new Go module that serves one
// Concord service, for `concord new`: a .proto with an annotated service,
// buf configuration, buf pinned in tools/go.mod, go.mod with the code
// generators as tool lines, a Makefile, main.go, a handler, a test that
// calls the service over a real server, a README and a .gitignore.
//
// Rendering is pure: Render returns file contents and writes nothing. The
// generated code (gen/) and the go.sum files come afterwards, from
// `go get -tool`, `go mod tidy` and `buf generate` run in the new module.
package scaffold
