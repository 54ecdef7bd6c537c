// Package codegen is protoc-gen-concord's generator. It knows only protobuf
// descriptors and the Concord options in concord/v1/options.proto.
//
// # What it generates
//
// For each .proto file with services, in the Go package <gopackage>concord
// beside protoc-gen-connect-go's <gopackage>connect:
//
//   - <Service>DiscoveryName, the registry name;
//   - <Service>Policy(), the method policy table built from the options;
//   - Register<Service>(r, svc) and New<Service>Client(conn), which apply
//     that table through the runtime in package rpc;
//   - <Service><Try>Branch(client, req) for each TCC Try method;
//   - a compile-time guard against an older runtime.
//
// # Checks
//
// Generate rejects, with a message naming the file, service and method:
// unknown or mistyped TCC Confirm and Cancel methods, negative or unparsable
// durations, a rate below 1 or a burst or queue below 1, retries on a
// non-idempotent or streaming method, a circuit breaker or TCC role on a
// streaming method, and an unknown rate-limit key source.
//
// # Streaming methods
//
// All four kinds are generated. On streams, timeout bounds the whole stream
// and rate_limit admits stream starts; retry, circuit_breaker and TCC roles
// are rejected.
package codegen
