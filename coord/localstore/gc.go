package localstore

import (
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// gcDiscardRatio is the fraction of a value log file that must be garbage
// before GC rewrites it; 0.5 is Badger's recommendation and bounds the
// value log's lifetime write amplification at 2.
const gcDiscardRatio = 0.5

// runGC runs value log GC every interval until Close starts.
func (s *Store) runGC(interval time.Duration) {
	defer close(s.gcDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
			s.collectGarbage()
		}
	}
}

// collectGarbage rewrites value log files while that reclaims space: each
// successful RunValueLogGC rewrites one file, so it repeats until Badger
// finds nothing worth rewriting or Close starts.
func (s *Store) collectGarbage() {
	for {
		select {
		case <-s.closing:
			return
		default:
		}
		s.gcRuns.Add(1)
		err := s.db.RunValueLogGC(gcDiscardRatio)
		switch {
		case err == nil:
			continue
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			// Nothing to reclaim, or a GC is already running.
		default:
			s.logger().Warn("localstore: value log GC failed", "err", err)
		}
		return
	}
}
