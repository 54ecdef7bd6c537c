// Command rpcbench measures Concord's RPC runtime against plain connect-go
// v2 and grpc-go, and the cold start of the greeter example against a plain
// connect-go greeter. `make bench` runs it from a clean clone:
//
//	cd bench && go run ./cmd/rpcbench [flags]
//
// Throughput: for each row it starts a fresh server in this process on
// 127.0.0.1, warms up, then runs closed-loop unary Greet calls (a 98-byte
// request, a 106-byte response) at each concurrency for a fixed duration,
// and reports requests/s, p50 and p99 latency and process CPU per call.
// Client and server share the process, so every row pays for both sides on
// the same cores; running them in one process keeps the rows comparable
// and lets one CPU profile show both.
//
// Cold start: it builds the greeter example and cmd/rawgreeter, then starts
// each binary repeatedly, each time with a fresh data directory, and
// measures the time from exec to the first successful Greet and, for the
// greeter, to coordination ready (GET /readyz 200). The greeter runs in
// embedded mode and in client mode, against a `concord node` started before
// the rows; a breakdown table adds package init (GODEBUG=inittrace=1).
//
// Idle RSS: it starts each binary, waits until it is ready, makes a few
// calls, lets it idle and reads VmRSS from /proc/<pid>/status.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

type config struct {
	duration   time.Duration
	warmup     time.Duration
	conc       []int
	count      int
	rows       *regexp.Regexp
	throughput bool
	coldRuns   int
	rssRuns    int
	idle       time.Duration
	repo       string
	cpuProfile string
}

func main() {
	var cfg config
	var conc, rows string
	flag.DurationVar(&cfg.duration, "duration", 3*time.Second, "measured duration of each throughput row")
	flag.DurationVar(&cfg.warmup, "warmup", time.Second, "warm-up before each throughput row")
	flag.StringVar(&conc, "conc", "1,8,64", "comma-separated concurrencies (calls in flight)")
	flag.IntVar(&cfg.count, "count", 1, "rounds over all rows, interleaved; the table shows the median of each metric")
	flag.StringVar(&rows, "rows", "", "run only throughput rows whose \"server protocol HTTP [variant]\" matches this regexp")
	flag.BoolVar(&cfg.throughput, "throughput", true, "run the throughput rows")
	flag.IntVar(&cfg.coldRuns, "coldstart-runs", 20, "starts per cold-start row; 0 skips cold start")
	flag.IntVar(&cfg.rssRuns, "rss-runs", 5, "starts per binary for idle RSS; 0 skips idle RSS")
	flag.DurationVar(&cfg.idle, "idle", 2*time.Second, "idle time before reading RSS")
	flag.StringVar(&cfg.repo, "repo", "..", "root of the Concord repository (the default suits running from bench/)")
	flag.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of each throughput measurement into this directory")
	flag.Parse()

	var err error
	if cfg.conc, err = parseInts(conc); err != nil {
		fatal(fmt.Errorf("-conc: %w", err))
	}
	if cfg.rows, err = regexp.Compile(rows); err != nil {
		fatal(fmt.Errorf("-rows: %w", err))
	}
	if cfg.count < 1 {
		fatal(errors.New("-count must be at least 1"))
	}
	if err := run(cfg, os.Stdout); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "rpcbench:", err)
	os.Exit(1)
}

func run(cfg config, out io.Writer) error {
	fmt.Fprintf(out, "rpcbench: %s %s/%s, %d CPUs, GOMAXPROCS=%d\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	if cfg.throughput {
		if err := runThroughput(cfg, out); err != nil {
			return err
		}
	}
	if cfg.coldRuns == 0 && cfg.rssRuns == 0 {
		return nil
	}
	tmp, err := os.MkdirTemp("", "rpcbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bins, err := buildPrograms(cfg.repo, tmp, rawGreeterProgram, greeterProgram)
	if err != nil {
		return err
	}
	if cfg.coldRuns > 0 {
		if err := runColdStart(cfg, tmp, bins, out); err != nil {
			return err
		}
	}
	if cfg.rssRuns > 0 {
		if err := runIdleRSS(cfg, tmp, bins, out); err != nil {
			return err
		}
	}
	return nil
}

func parseInts(s string) ([]int, error) {
	var ns []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad concurrency %q", f)
		}
		ns = append(ns, n)
	}
	return ns, nil
}
