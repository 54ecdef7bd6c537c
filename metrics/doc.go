// Package metrics exports a Concord process's RPC, TCC and coordination
// state as Prometheus metrics (github.com/prometheus/client_golang).
//
// An App (package concord) builds all of it on its own registry and
// serves it on its admin listener at /metrics; see concord.WithMetricsRegistry.
// The constructors here are for processes that wire the parts by hand.
//
// # Parts
//
//   - NewServer: calls served by an rpc.Server, fed by its metrics hook
//     (rpc.WithMetrics, Server.Observe) and an in-flight interceptor
//     (Server.Interceptor).
//   - NewTCC: the phase calls a TCC coordinator makes (tcc.WithPhaseHook,
//     TCC.Observe).
//   - NewCoord: a collector that reads the coordination status
//     (registry.ReadStatus) when scraped, at most once per cache period.
//   - NewClient: calls a Conn's clients make, per upstream service, with
//     retries (rpc.WithClientMetrics, Client.Observe).
//   - NewGovernance: a collector of rate limits (admitted, refused,
//     borrowed tokens, saturation), shed calls and circuit breakers per
//     upstream instance (at most MaxBreakerSeries), read from the server
//     and the Conn when scraped.
//   - NewLocks: lock and election grants, waits and lost leases
//     (lock.WithEvents, Locks.Observe), by kind only.
//
// # Label policy
//
// Every label value comes from a fixed set or from what the operator
// deployed, never from a caller: procedure is a procedure the server
// registered (anything else is "unknown", so a client probing random paths
// adds no series), protocol is connect, grpc, grpcweb or unknown, code is
// "ok" or a Connect code name. Coordination labels are the names of nodes,
// streams, registered services, consumers and topics; client labels are
// upstream services from generated policies and the instance IDs the
// registry lists (bounded by MaxBreakerSeries); lock metrics carry only
// the kind, since lock names may come from data.
//
// # Names
//
// Metric names start with concord_ and follow the Prometheus conventions
// (base units, _total counters); the tests run promlint over them.
package metrics
