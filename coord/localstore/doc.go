// Package localstore is each Concord instance's local durable state: a
// key-value store on Badger (github.com/dgraph-io/badger/v4) in the
// instance's data directory. The transactional outbox, the TCC barrier, the
// inbox dedupe table and the fencing-token guard keep their rows here, so
// that a row and the business write it protects commit in one local
// transaction.
//
// Open a store with Open and release it with Close; features depend on the
// small KV interface, which *Store implements.
//
// # Guarantees
//
// Durability. By default every committed write (Set, Delete, an Update
// that returned nil) is in Badger's write-ahead log (the memtable's log,
// and for values of 16 KiB or more the value log) and synced to disk
// before the call returns. One caveat from Badger: a failed sync of the
// value log is logged at ERROR rather than returned. WithSyncWrites(false)
// skips the syncs: a returned write has reached the operating system and
// survives a crash of the process, but an operating system crash or power
// loss may lose the most recent writes.
//
// Atomicity and isolation. Update runs its function in a transaction under
// Badger's serializable snapshot isolation: reads see one snapshot taken
// at the start plus the transaction's own writes; writes are buffered and
// committed all together or not at all. Concurrency control is optimistic:
// at commit, if any key the transaction read (with Get, including keys
// that were missing, or keys returned by Scan) was committed by another
// transaction since the snapshot, the commit is refused and Update runs the
// function again on a fresh snapshot, after a randomized backoff, up to
// WithMaxAttempts times (default 100), and then returns ErrConflict with
// nothing written. Read-modify-write through Update is therefore atomic:
// concurrent increments of one counter are never lost. Conflicts are
// detected per key, not per range: a key inserted under a prefix that a
// transaction scanned does not conflict with it (a phantom); serialize such
// writers through a key they all read and write. Writes that read nothing
// never conflict; the last commit wins. View and Store.Scan read one
// consistent snapshot and never conflict.
//
// Limits. A transaction can carry about 614 KiB of writes, or about 6,500
// keys, whichever comes first (15% of a memtable; values of 16 KiB or more
// count only as a pointer); beyond that a write returns ErrTooLarge. Keys
// are at most MaxKeySize bytes and may not start with "!badger!"; values
// are at most MaxValueSize bytes.
//
// Concurrency. A Store is safe for concurrent use by multiple goroutines.
// A Tx belongs to one call of the function given to Update or View: it is
// not safe for concurrent use and is invalid once the function returns.
// Close waits for calls in progress; calls that start after it return
// ErrClosed. Values returned by Get and passed to Scan callbacks are copies
// that the caller may keep; Set copies its arguments.
//
// Crashes. On Open after a crash, Badger replays its write-ahead logs and
// truncates them at the last complete transaction: every transaction whose
// commit returned with sync writes on is present, and no transaction is
// ever visible in part. Only one Store may have a directory open, across
// processes (Badger holds a file lock, released by the kernel when a
// process dies); a second Open returns ErrDirInUse.
//
// # Memory and disk
//
// Badger's defaults reserve about 87 MiB of heap at open, mostly the
// skiplist arena of one 64 MiB memtable (83 MiB with its batch headroom). The store uses a small profile instead (profile.go
// documents each setting): 4 MiB memtables, at most two waiting to be
// flushed, an 8 MiB block cache, a 2 MiB index cache, two compactors, a
// short level-0 backlog, values of 16 KiB or more in the value log, 64 MiB
// value log files. Measured on linux/amd64 (TestOpenFootprint,
// BenchmarkOpen), opening a store adds about 6 MiB to the live Go heap and
// about 2 MiB of resident memory (the arena's pages are touched only as it
// fills), against about 86 MiB of heap and 17 MiB resident with Badger's
// defaults. Under a sustained write burst three memtables (about 16 MiB)
// and the caches can be in use.
//
// A background goroutine runs Badger's value log garbage collection every
// WithGCInterval (default 5 minutes) to reclaim the space of overwritten
// and deleted large values; small values live in the LSM tree and are
// reclaimed by compaction. Expiry set with Tx.SetWithTTL uses the wall
// clock, in whole seconds.
//
// Badger's log messages go to the logger given with WithLogger, at WARN and
// above unless WithLogLevel says otherwise; without WithLogger they are
// dropped. Badger's process-wide expvar metrics are disabled.
package localstore
