// Package concord ties Concord's RPC runtime (package rpc) and its
// coordination backend (package coord) into one App with one lifecycle.
//
//	app := concord.New(concord.WithDataDir("./data"))          // embedded node by default
//	greeterv1concord.RegisterGreeterService(app, &greeter{})   // generated
//	err := app.Run(ctx)                                         // serve; drain on SIGTERM
//
// The App serves RPCs from the first moment and starts its coordination node
// beside them: embedded (default), one node of a cluster
// (WithCoordOptions(coord.WithCluster(...))) or a client of an external NATS
// cluster (coord.WithClient). Readiness (/readyz, gRPC health) turns true
// once the node is ready. It serves its coordination status as JSON at
// StatusPath on a separate admin listener (WithAdminAddr, loopback by
// default), which `concord status` prints; the RPC port serves RPCs,
// reflection and the health probes only.
//
// # Observability
//
// Tracing is off unless configured: WithTracerProvider, or the standard
// OTEL_* environment variables (OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_TRACES_EXPORTER=otlp; see package tracing), which make the App
// build an OTLP exporter and flush it when Run ends. A traced App records
// a server span for every call it serves and a client span for every call
// through App.Client, carrying W3C trace context in request headers over
// Connect, gRPC and gRPC-Web, and spans for lock waits (App.Mutex,
// App.Election) and TCC transactions and their phases (App.TCC). Untraced,
// no tracing code runs on any call path.
//
// Teams that use fx get the same through package concordfx; nothing here
// needs fx.
package concord
