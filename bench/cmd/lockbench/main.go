// Command lockbench measures Concord's distributed Mutex (coord/lock) on an
// embedded single node against embedded etcd's concurrency.Mutex:
//
//	cd bench && go run ./cmd/lockbench [flags]
//
// Each row starts a fresh backend in this process with its data in a
// temporary directory, gives every contender its own lease (a lock.Session
// or a concurrency.Session, TTL 10s), warms up, then runs closed-loop
// Lock+Unlock pairs on one key for a fixed duration and reports pairs/s
// and the p50 and p99 latency of a pair (with several contenders, a pair's
// latency includes waiting for the others). With several contenders it also
// prints fairness rows: the pairs each contender completed, their largest
// deviation from the mean, the p50 and p99 wait in Lock, and the p50 and
// p99 handoff: from a holder's call to Unlock to the grant of a contender
// that was waiting then (with fair service a pair's latency is about the
// contenders times the mean service time, so the handoff is what measures
// the hand-over itself). Rows:
//
//   - concord durable: JetStream fsyncs before acknowledging each write
//     (the default).
//   - concord relaxed: coord.WithSyncInterval(1s).
//   - concord durable, own conns and concord relaxed, own conns: the same,
//     but each contender has a NATS connection of its own (a client-mode
//     node on the embedded node's loopback listener), as contenders in
//     separate processes would: their order is kept by tickets in the
//     store, not by the in-process queue.
//   - etcd durable: etcd's defaults (fsync on every commit).
//   - etcd relaxed: etcd with UnsafeNoFsync.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/concordrpc/concord/bench/internal/closedloop"
)

// backend is one system under test.
type backend interface {
	// contender returns a lock on the shared key for one contender.
	contender(ctx context.Context) (locker, error)
	close() error
}

// locker is one contender's lock.
type locker interface {
	lock(ctx context.Context) error
	unlock(ctx context.Context) error
	close() error
}

type row struct {
	name  string
	start func(dir string) (backend, error)
}

type result struct {
	row         string
	contenders  int
	pairs       int
	perSecond   float64
	p50, p99    time.Duration
	failedPairs int
	// Fairness: pairs completed by each contender in the measured window,
	// and the wait in Lock (from the call to the grant).
	grants                 []int
	waitP50, waitP99       time.Duration
	handoffP50, handoffP99 time.Duration
}

func main() {
	duration := flag.Duration("duration", 3*time.Second, "measured duration of each row")
	warmup := flag.Duration("warmup", time.Second, "warm-up before each row")
	conc := flag.String("contenders", "1,8", "comma-separated numbers of contenders on the one key")
	only := flag.String("rows", "", "run only rows whose name contains this")
	flag.Parse()
	counts, err := closedloop.ParseCounts(*conc)
	if err != nil {
		fatal(fmt.Errorf("-contenders: %w", err))
	}
	rows := []row{
		{"concord durable", startConcord(false, false)},
		{"concord relaxed", startConcord(true, false)},
		{"concord durable, own conns", startConcord(false, true)},
		{"concord relaxed, own conns", startConcord(true, true)},
		{"etcd durable", startEtcd(false)},
		{"etcd relaxed", startEtcd(true)},
	}
	var results []result
	for _, r := range rows {
		if !strings.Contains(r.name, *only) {
			continue
		}
		for _, n := range counts {
			res, err := measure(r, n, *warmup, *duration)
			if err != nil {
				fatal(fmt.Errorf("%s, %d contenders: %w", r.name, n, err))
			}
			results = append(results, res)
			fmt.Fprintf(os.Stderr, "%s, %d contenders: %.0f pairs/s\n", r.name, n, res.perSecond)
		}
	}
	printTable(os.Stdout, results)
}

func measure(r row, contenders int, warmup, duration time.Duration) (result, error) {
	dir, err := os.MkdirTemp("", "lockbench")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	b, err := r.start(dir)
	if err != nil {
		return result{}, err
	}
	defer b.close()
	ctx, cancel := context.WithTimeout(context.Background(), warmup+duration+time.Minute)
	defer cancel()
	lockers := make([]locker, contenders)
	for i := range lockers {
		if lockers[i], err = b.contender(ctx); err != nil {
			return result{}, err
		}
		defer lockers[i].close()
	}
	var (
		mu        sync.Mutex
		latencies []time.Duration
		waits     []time.Duration
		handoffs  []time.Duration
		unlocking time.Time // when the last Unlock was called; guarded by mu
		grants    = make([]int, contenders)
		failed    int
		wg        sync.WaitGroup
	)
	begin := time.Now()
	measureFrom := begin.Add(warmup)
	end := measureFrom.Add(duration)
	errc := make(chan error, contenders)
	for c, l := range lockers {
		wg.Go(func() {
			var mine, myWaits []time.Duration
			fails := 0
			for time.Now().Before(end) {
				start := time.Now()
				lctx, lcancel := context.WithTimeout(ctx, 30*time.Second)
				err := l.lock(lctx)
				granted := time.Now()
				wait := granted.Sub(start)
				if err == nil {
					mu.Lock()
					if start.Before(unlocking) && start.After(measureFrom) && granted.Before(end) {
						handoffs = append(handoffs, granted.Sub(unlocking))
					}
					unlocking = time.Now()
					mu.Unlock()
					err = l.unlock(lctx)
				}
				lcancel()
				if err != nil {
					if fails++; fails > 100 {
						errc <- err
						return
					}
					continue
				}
				if start.After(measureFrom) && time.Now().Before(end) {
					mine = append(mine, time.Since(start))
					myWaits = append(myWaits, wait)
				}
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			waits = append(waits, myWaits...)
			grants[c] = len(mine)
			failed += fails
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return result{}, err
	}
	if len(latencies) == 0 {
		return result{}, errors.New("no pair completed")
	}
	slices.Sort(latencies)
	slices.Sort(waits)
	slices.Sort(handoffs)
	pct := func(d []time.Duration, p int) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return d[len(d)*p/100]
	}
	return result{
		row: r.name, contenders: contenders, pairs: len(latencies),
		perSecond:   float64(len(latencies)) / duration.Seconds(),
		p50:         latencies[len(latencies)/2],
		p99:         latencies[len(latencies)*99/100],
		failedPairs: failed,
		grants:      grants,
		waitP50:     waits[len(waits)/2],
		waitP99:     waits[len(waits)*99/100],
		handoffP50:  pct(handoffs, 50),
		handoffP99:  pct(handoffs, 99),
	}, nil
}

func printTable(out io.Writer, results []result) {
	// etcdOf finds the etcd row with the same durability and contenders.
	etcdOf := func(r result) *result {
		want := strings.Replace(r.row, "concord", "etcd", 1)
		for i := range results {
			if results[i].row == want && results[i].contenders == r.contenders {
				return &results[i]
			}
		}
		return nil
	}
	fmt.Fprintln(out, "| system | contenders | lock+unlock/s | p50 | p99 | failed | vs etcd (same sync) |")
	fmt.Fprintln(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range results {
		vs := "-"
		if e := etcdOf(r); e != nil && strings.HasPrefix(r.row, "concord") && e.perSecond > 0 {
			vs = fmt.Sprintf("%.2fx", r.perSecond/e.perSecond)
		}
		fmt.Fprintf(out, "| %s | %d | %.0f | %s | %s | %d | %s |\n", r.row, r.contenders, r.perSecond, micros(r.p50), micros(r.p99), r.failedPairs, vs)
	}
	fmt.Fprintln(out, "\nFairness (pairs per contender; wait = time in Lock)")
	fmt.Fprintln(out, "| system | contenders | pairs per contender | max deviation from mean | wait p50 | wait p99 | p99/p50 | handoff p50 | handoff p99 |")
	fmt.Fprintln(out, "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range results {
		if r.contenders < 2 {
			continue
		}
		counts := make([]string, len(r.grants))
		for i, g := range r.grants {
			counts[i] = strconv.Itoa(g)
		}
		fmt.Fprintf(out, "| %s | %d | %s | %.0f%% | %s | %s | %.1f | %s | %s |\n", r.row, r.contenders, strings.Join(counts, " "),
			100*r.spread(), micros(r.waitP50), micros(r.waitP99), float64(r.waitP99)/float64(max(r.waitP50, 1)),
			micros(r.handoffP50), micros(r.handoffP99))
	}
	fmt.Fprintln(out, "\nTargets")
	for _, r := range results {
		e := etcdOf(r)
		switch {
		case e == nil || !strings.HasPrefix(r.row, "concord"):
		case r.row == "concord durable" && r.contenders == 1:
			verdict := "MET"
			if r.perSecond < 2*e.perSecond {
				verdict = "MISSED"
			}
			fmt.Fprintf(out, "  durable Concord >= 2x etcd with 1 client: %.0f vs %.0f pairs/s = %.2fx: %s\n", r.perSecond, e.perSecond, r.perSecond/e.perSecond, verdict)
		case r.contenders > 1:
			verdict := "MET"
			if r.handoffP50 > 2*time.Millisecond {
				verdict = "MISSED"
			}
			fmt.Fprintf(out, "  %s, %d contenders: handoff p50 <= 2ms: %s (etcd %s; pair p50 %s): %s\n", r.row, r.contenders, micros(r.handoffP50), micros(e.handoffP50), micros(r.p50), verdict)
		}
	}
	for _, r := range results {
		if !strings.HasPrefix(r.row, "concord durable") || r.contenders < 2 {
			continue
		}
		met := func(ok bool) string {
			if ok {
				return "MET"
			}
			return "MISSED"
		}
		fmt.Fprintf(out, "  fair handoff, %s, %d contenders: >= 4000 pairs/s: %.0f: %s; wait p99 <= 4x p50: %s vs %s: %s; each share within 20%% of the mean: %.0f%%: %s\n",
			r.row, r.contenders, r.perSecond, met(r.perSecond >= 4000),
			micros(r.waitP99), micros(r.waitP50), met(r.waitP99 <= 4*r.waitP50),
			100*r.spread(), met(r.spread() <= 0.2))
	}
}

// spread returns the largest relative deviation of a contender's pairs
// from the mean.
func (r result) spread() float64 {
	if len(r.grants) == 0 {
		return 0
	}
	total := 0
	for _, g := range r.grants {
		total += g
	}
	mean := float64(total) / float64(len(r.grants))
	if mean == 0 {
		return 0
	}
	worst := 0.0
	for _, g := range r.grants {
		worst = max(worst, math.Abs(float64(g)-mean)/mean)
	}
	return worst
}

func micros(d time.Duration) string {
	if d >= 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%d µs", d.Microseconds())
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "lockbench:", err)
	os.Exit(1)
}
