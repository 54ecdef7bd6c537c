package localstore

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

const mib = 1 << 20

// footprint is memory in use, after a GC.
type footprint struct {
	heap uint64 // live heap: runtime.MemStats.HeapAlloc
	sys  uint64 // memory obtained from the OS by the Go runtime
	rss  uint64 // resident set size from /proc/self/status; 0 elsewhere
}

func measure() footprint {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return footprint{heap: ms.HeapAlloc, sys: ms.Sys, rss: rss()}
}

func rss() uint64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func diff(a, b uint64) float64 { return (float64(b) - float64(a)) / mib }

// TestOpenFootprint measures what opening a store costs and guards the
// small profile against regressions (Badger's defaults cost ~87 MiB). It
// is not parallel, so parallel tests are paused while it measures.
func TestOpenFootprint(t *testing.T) {
	dir := t.TempDir()
	before := measure()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	after := measure()
	runtime.KeepAlive(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	heap := diff(before.heap, after.heap)
	t.Logf("Open: heap +%.1f MiB, runtime sys +%.1f MiB, RSS +%.1f MiB",
		heap, diff(before.sys, after.sys), diff(before.rss, after.rss))
	if heap > 24 {
		t.Errorf("Open grew the live heap by %.1f MiB; the small profile should stay under 24 MiB", heap)
	}
}

// BenchmarkOpen reports the memory one open store holds, for the small
// profile and, for comparison, Badger's defaults.
func BenchmarkOpen(b *testing.B) {
	profiles := []struct {
		name string
		open func(dir string) (func() error, error)
	}{
		{"small-profile", func(dir string) (func() error, error) {
			s, err := Open(dir, WithGCInterval(0))
			if err != nil {
				return nil, err
			}
			return s.Close, nil
		}},
		{"badger-defaults", func(dir string) (func() error, error) {
			db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithMetricsEnabled(false))
			if err != nil {
				return nil, err
			}
			return db.Close, nil
		}},
	}
	for _, p := range profiles {
		b.Run(p.name, func(b *testing.B) {
			var heap, sys, rssMiB float64
			n := 0
			for b.Loop() {
				dir := b.TempDir()
				before := measure()
				closeFn, err := p.open(dir)
				if err != nil {
					b.Fatal(err)
				}
				after := measure()
				heap += diff(before.heap, after.heap)
				sys += diff(before.sys, after.sys)
				rssMiB += diff(before.rss, after.rss)
				n++
				if err := closeFn(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(heap/float64(n), "heap-MiB")
			b.ReportMetric(sys/float64(n), "sys-MiB")
			b.ReportMetric(rssMiB/float64(n), "rss-MiB")
		})
	}
}
