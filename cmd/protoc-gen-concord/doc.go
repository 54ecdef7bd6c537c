// Command protoc-gen-concord is the protoc and buf plugin that generates
// Concord bindings for protobuf services: for a file whose Go package is
// foov1, it writes foov1concord/<name>.concord.go beside the
// foov1connect package of protoc-gen-connect-go. Run it from buf.gen.yaml:
//
//	plugins:
//	  - local: ["go", "tool", "protoc-gen-concord"]
//	    out: gen
//	    opt: paths=source_relative
//
// It takes protoc-gen-go's standard options (paths, module, M).
package main
