// Package coord is Concord's coordination backend: a NATS JetStream node
// embedded in the process (alone, or in a cluster of such processes) or a
// connection to an external NATS cluster. Registry, locks, election, config,
// the TCC transaction log and durable messages live in its buckets and
// streams; each instance's local durable state lives in Badger (package
// coord/localstore).
//
// # Modes
//
//   - Embedded (default): one node in the process, reached through an
//     in-process connection, with no network listener unless WithListen
//     asks for one. State is R1.
//   - Cluster (WithCluster): every process embeds a node with a stable name;
//     nodes route to their configured peers. Buckets and streams are R3 once
//     at least 3 nodes are configured, and Open raises existing ones to R3.
//   - Client (WithClient): no node; connect to an existing NATS cluster by
//     URL with user and password, a token, an nkey seed or a credentials
//     file.
//
// # Readiness
//
// Open returns once JetStream has a meta leader and Concord's buckets and
// streams exist. It creates them idempotently and retries while a cluster
// forms, until its context ends. It fails fast with a clear error on a bad
// configuration, a data directory locked by another process
// (ErrDataDirInUse), a port in use, an unusable directory, or rejected
// credentials; the NATS server's fatal errors are reported, never turned
// into os.Exit.
//
// # Durability
//
// By default every coordination write is acknowledged only after JetStream
// has fsynced it (SyncAlways), because lazy fsync loses acknowledged writes
// on power loss. That caps a single node at a few thousand writes per second
// on ordinary disks (BENCHMARKS.md). WithSyncInterval relaxes it: an
// acknowledged write can then be lost if the machine fails within the
// interval. In an R3 cluster a write is acknowledged once a majority holds
// it, so with a relaxed interval a write is lost only when a majority of
// machines lose power within the same interval; that is the usual trade for
// R3 production clusters.
//
// # Security
//
// Every listener a node opens authenticates its peers. Cluster routes
// require a password (Cluster.Password, the same on every node) or mutual
// TLS (Cluster.TLS with ClientAuth tls.RequireAndVerifyClientCert); Open
// refuses a cluster with neither unless Cluster.InsecureOpenRoutes is set.
// A node's NATS client listener (WithListen; a cluster node always has
// one, which routing needs) requires a login: the process's own
// connection uses credentials generated at Open, other clients the user
// and password of WithListenAuth; Open refuses WithListen without
// WithListenAuth unless WithInsecureListenNoAuth is given. An embedded node
// without WithListen has no listener at all. nats-server authenticates
// routes with a password or TLS only; nkeys and credentials files apply to
// client connections (ClientAuth), for example an app in client mode.
//
// Keys that coordination features write are checked (letters, digits and
// "-/_=.", at most 2 KiB) and anything a caller sends is escaped or hashed
// into such a key first, so no caller value reaches a subject raw.
//
// # Logs and limits
//
// NATS server logs go to the configured slog logger, at Warn and above by
// default (WithLogLevel). JetStream memory and file storage are capped by
// WithLimits (DefaultMaxMemory, DefaultMaxStore).
package coord
