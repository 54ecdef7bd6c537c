// Package baseline holds what the benchmarks share: the greeter
// implementation every server runs, the request every client sends, the
// plain connect-go server Concord is compared with, and the client HTTP
// settings. It does not import grpc-go (see package grpcgreeter), so the
// raw connect-go greeter binary links only what it uses.
package baseline
