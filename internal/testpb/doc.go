// Package testpb holds Concord's test service, concordtest.v1.TestService
// (proto/concordtest/v1/test.proto), and its generated code under gen/:
// one method of each stream kind, a TCC Try/Confirm/Cancel triple, the
// Concord options generated code carries into the runtime, and a
// protovalidate rule. `make generate` regenerates it.
//
// Its test is protoc-gen-concord's compile-and-call test: it serves the
// generated service on a real HTTP server and calls every method through
// the generated client.
package testpb
