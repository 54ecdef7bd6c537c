package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concordrpc/concord/bench/internal/cputime"
)

// result is one measurement of one row at one concurrency.
type result struct {
	requests int
	errors   int
	firstErr error
	elapsed  time.Duration
	cpu      time.Duration   // user+system CPU of this process (client and server) during the window
	lat      []time.Duration // sorted latencies of the calls that finished in the window
}

func (r *result) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// cpuPerCall is the process CPU time per successful call: client and
// server together. It is less disturbed by other load on the machine than
// throughput is.
func (r *result) cpuPerCall() time.Duration {
	if r.requests == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.requests)
}

// quantile returns the nearest-rank q-quantile of the latencies.
func (r *result) quantile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(r.lat)))) - 1
	return r.lat[max(i, 0)]
}

// runLoad runs a closed loop: conc goroutines each call as fast as they can
// for warmup, then for dur while being measured. A call counts if it
// finishes inside the measured window. If profile is not nil, a CPU profile
// of the window is written to it.
func runLoad(call func(context.Context) error, conc int, warmup, dur time.Duration, profile io.Writer) (*result, error) {
	const (
		warming = iota
		measuring
		stopped
	)
	var phase atomic.Int32
	type worker struct {
		lat      []time.Duration
		errors   int
		firstErr error
	}
	workers := make([]worker, conc)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.lat = make([]time.Duration, 0, 1<<16/conc+1024)
		wg.Go(func() {
			ctx := context.Background()
			for phase.Load() != stopped {
				start := time.Now()
				err := call(ctx)
				d := time.Since(start)
				if phase.Load() != measuring {
					continue
				}
				if err != nil {
					if w.errors == 0 {
						w.firstErr = err
					}
					w.errors++
					continue
				}
				w.lat = append(w.lat, d)
			}
		})
	}
	time.Sleep(warmup)
	if profile != nil {
		if err := pprof.StartCPUProfile(profile); err != nil {
			phase.Store(stopped)
			wg.Wait()
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
	}
	cpu0 := cputime.Process()
	start := time.Now()
	phase.Store(measuring)
	time.Sleep(dur)
	phase.Store(stopped)
	elapsed := time.Since(start)
	cpu := cputime.Process() - cpu0
	if profile != nil {
		pprof.StopCPUProfile()
	}
	wg.Wait()

	r := &result{elapsed: elapsed, cpu: cpu}
	for _, w := range workers {
		r.lat = append(r.lat, w.lat...)
		r.errors += w.errors
		if r.firstErr == nil {
			r.firstErr = w.firstErr
		}
	}
	r.requests = len(r.lat)
	slices.Sort(r.lat)
	return r, nil
}
