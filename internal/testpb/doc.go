// Package testpb holds Concord's test service, concordtest.v1.TestService
// (proto/concordtest/v1/test.proto), and its generated code under gen/:
// one method of each stream kind, a TCC Try/Confirm/Cancel triple, the
// Concord options generated code carries into the runtime, and a
// protovalidate rule; and an event, concordtest.events.v1.Pinged
// (proto/concordtest/events/v1/events.proto), in a Go package of its own.
// `make generate` regenerates them.
//
// Its test is protoc-gen-concord's compile-and-call test: it serves the
// generated service on a real HTTP server and calls every method through
// the generated client, and publishes and consumes the event through the
// generated helpers on an embedded node.
package testpb
