package rpc

// Version is the version of Concord's runtime.
const Version = "0.1.0-dev"

// IsAtLeastVersion0_1_0 is referenced by code that protoc-gen-concord
// generates, so that code generated for a newer runtime fails to compile
// against an older one instead of misbehaving at run time. Generated code
// never references a guard newer than the runtime it was generated for.
const IsAtLeastVersion0_1_0 = true
