// Package protodeps writes the .proto files that Concord services import into
// an include directory: buf/validate/validate.proto, taken from the
// checksum-verified Go module github.com/bufbuild/protovalidate, and
// concord/v1/options.proto, embedded in Concord itself.
//
// Nothing third-party is committed anywhere: the module is fetched through
// the Go module proxy (or read from the module cache), and its checksum is
// compared with the one pinned here before any file is written.
package protodeps
