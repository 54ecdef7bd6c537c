// Package codegen is protoc-gen-concord's generator. It knows only protobuf
// descriptors and the Concord options in concord/v1/options.proto.
//
// # What it generates
//
// For each .proto file with services or events, in the Go package
// <gopackage>concord beside protoc-gen-connect-go's <gopackage>connect:
//
//   - <Service>DiscoveryName, the registry name;
//   - <Service>Policy(), the method policy table built from the options;
//   - Register<Service>(r, svc) and New<Service>Client(conn), which apply
//     that table through the runtime in package rpc;
//   - <Service><Try>Branch(req) for each TCC Try method: the branch as
//     data (procedures and request bytes) that a coordinator can log;
//   - for each message declared an event with (concord.v1.event):
//     <Message>Topic; Publish<Message>(ctx, outbox, tx, ev), which writes
//     the event's deterministic encoding, with the ordering key taken from
//     the field the option names, to a package msg outbox in the caller's
//     local transaction; and Subscribe<Message>(ctx, node, store,
//     consumer, h, opts...), which decodes each delivery for h and
//     dead-letters one that does not decode;
//   - a compile-time guard against an older runtime.
//
// # Checks
//
// Generate rejects, with a message naming the file, service and method:
// unknown or mistyped TCC Confirm and Cancel methods, negative or unparsable
// durations, a zero rate-limit period or circuit-breaker window or open_for,
// a rate below 1 or a burst or queue below 1, retries on a non-idempotent or
// streaming method, a circuit breaker or TCC role on a streaming method, an
// unknown rate-limit key source, and services whose generated Go names would
// be declared twice in one package. With a message naming the file and the
// message, it rejects events with a missing topic or one that package msg
// would refuse (msg.CheckTopic), an ordering key that names no field of the
// message or a field that is repeated, a map or not a string or integer,
// and events whose generated Go names meet another's. It reports every
// problem, joined, and then generates nothing.
//
// # Tests
//
// Golden tests (golden_test.go) compile the .proto files of each case under
// testdata/ in process and compare the output with testdata/<case>/want;
// `go test ./codegen -run TestGolden -update` rewrites it. Other tests build
// the golden output with protoc-gen-go's and protoc-gen-connect-go's, and
// run every case through the real `buf generate`. The compile-and-call test
// lives in internal/testpb.
//
// # Streaming methods
//
// All four kinds are generated. On streams, timeout bounds the whole stream
// and rate_limit admits stream starts; retry, circuit_breaker and TCC roles
// are rejected.
package codegen
