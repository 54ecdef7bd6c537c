// Package closedloop measures an operation under a fixed concurrency, as
// the bench commands' rows do: n workers call it back to back for a
// warm-up and a measured window, and the window's completions give the
// rate and latency percentiles.
package closedloop

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Result is one measured window.
type Result struct {
	// PerSecond is the completed operations per second of the window.
	PerSecond float64
	// P50 and P99 are latency percentiles of the operations that started
	// and ended inside the window.
	P50, P99 time.Duration
}

// Run runs op with n workers for warmup and then duration, each call with
// a 30 s timeout; worker is the worker's index (0 to n-1), for ops that
// give each worker its own keys. The first error stops its worker and is
// returned.
func Run(n int, warmup, duration time.Duration, op func(ctx context.Context, worker int) error) (Result, error) {
	var (
		mu   sync.Mutex
		lats []time.Duration
		wg   sync.WaitGroup
		errs = make(chan error, n)
	)
	from := time.Now().Add(warmup)
	end := from.Add(duration)
	for w := range n {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(end) {
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := op(ctx, w)
				cancel()
				if err != nil {
					errs <- err
					return
				}
				if start.After(from) && time.Now().Before(end) {
					mine = append(mine, time.Since(start))
				}
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return Result{}, err
	}
	if len(lats) == 0 {
		return Result{}, errors.New("no operation completed in the measured window")
	}
	slices.Sort(lats)
	return Result{
		PerSecond: float64(len(lats)) / duration.Seconds(),
		P50:       lats[len(lats)/2].Round(10 * time.Microsecond),
		P99:       lats[len(lats)*99/100].Round(10 * time.Microsecond),
	}, nil
}

// ParseCounts parses a comma-separated list of positive integers, such as
// a -concurrency flag's "1,32".
func ParseCounts(s string) ([]int, error) {
	var counts []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad count %q: want a positive integer", f)
		}
		counts = append(counts, n)
	}
	return counts, nil
}
