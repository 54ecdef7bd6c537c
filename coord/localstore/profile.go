package localstore

import (
	"cmp"
	"github.com/dgraph-io/badger/v4"
)

// Limits of the small profile.
const (
	// MaxKeySize is the longest key the store accepts, in bytes (Badger's
	// own limit).
	MaxKeySize = 65000
	// MaxValueSize is the largest value the store accepts, in bytes. Local
	// state is small; a larger value is almost certainly a bug, and it must
	// fit in one value log file.
	MaxValueSize = 16 << 20

	// memTableSize is the size of one memtable, the in-memory write buffer
	// that is flushed to an L0 table when full. Badger allocates each
	// memtable's skiplist arena up front, at 1.3 times this size (room for
	// one more batch), so Badger's default of 64 MiB is what reserves most
	// of its ~87 MiB heap at open. Local state is small (outbox rows,
	// barrier and dedupe markers): 4 MiB, a 5.2 MiB arena, is plenty.
	memTableSize = 4 << 20
	// maxBatchSize is what one transaction may hold: Badger caps a commit
	// batch at 15% of a memtable (~614 KiB here) and at that many bytes
	// divided by a skiplist node's size (~6,500 writes here).
	maxBatchSize = memTableSize * 15 / 100
	// valueThreshold: values shorter than this live in the LSM tree next to
	// their keys; longer ones go to the value log. Badger's default (1 MiB)
	// must be lowered: Badger rejects a threshold above maxBatchSize,
	// because such a value could never be committed. 16 KiB keeps the usual
	// small values in the LSM tree, where deleting them reclaims space by
	// compaction alone, still lets ~38 maximal inline values share one
	// transaction, and sends large payloads to the value log.
	valueThreshold = 16 << 10
	// numMemtables caps the memtables waiting to be flushed (Badger default
	// 5). With 2, at most one active and two immutable memtables (~16 MiB)
	// exist under a write burst; writers stall briefly while one flushes.
	numMemtables = 2
	// blockCacheSize caches decompressed table blocks for reads (Badger
	// default 256 MiB). It must be non-zero because tables are Snappy
	// compressed. 8 MiB holds the hot part of a small store; misses are
	// served from the page cache of memory-mapped tables.
	blockCacheSize = 8 << 20
	// indexCacheSize bounds memory for table indexes and bloom filters.
	// Badger's default (0) keeps every table's index in the heap, so memory
	// grows with the data; a small cache loads them on demand instead.
	indexCacheSize = 2 << 20
	// numCompactors is the number of compaction goroutines (Badger default
	// 4; Badger rejects 1). Two are enough for a small store and keep CPU
	// usage low on small machines.
	numCompactors = 2
	// numLevelZeroTables is how many L0 tables trigger compaction (default
	// 5). Every read checks each overlapping L0 table, so fewer keep reads
	// fast; with 4 MiB memtables compacting them is cheap.
	numLevelZeroTables = 3
	// numLevelZeroTablesStall is how many L0 tables stall writes until
	// compaction catches up (default 15), bounding the L0 backlog and the
	// memory its indexes use.
	numLevelZeroTablesStall = 8
	// valueLogFileSize is the size of one value log file (default 1 GiB).
	// Value log GC rewrites whole files and never the active one, so with
	// 1 GiB files a small store would never reclaim space. Badger maps
	// twice this size while a file is active (sparse on disk).
	valueLogFileSize = 64 << 20
)

// badgerOptions builds the small-footprint profile for dir. Options not set
// here keep Badger's defaults: 4 KiB blocks, Snappy compression, conflict
// detection on (required for Update's serializable isolation), one version
// per key.
func badgerOptions(dir string, cfg config) badger.Options {
	opt := badger.DefaultOptions(dir).
		WithMemTableSize(memTableSize).
		WithValueThreshold(valueThreshold).
		WithNumMemtables(numMemtables).
		WithBlockCacheSize(blockCacheSize).
		WithIndexCacheSize(indexCacheSize).
		WithNumCompactors(numCompactors).
		WithNumLevelZeroTables(numLevelZeroTables).
		WithNumLevelZeroTablesStall(numLevelZeroTablesStall).
		WithValueLogFileSize(cmp.Or(cfg.vlogSize, valueLogFileSize)).
		WithDetectConflicts(true).
		WithSyncWrites(cfg.syncWrites).
		// Badger's metrics are process-wide expvar variables keyed by
		// directory: several stores in one process (tests, tools) would
		// share and leak them. Concord exports its own metrics.
		WithMetricsEnabled(false).
		WithLogger(nil)
	if cfg.logger != nil {
		opt = opt.WithLogger(slogAdapter{l: cfg.logger, min: cfg.logLevel})
	}
	return opt
}
