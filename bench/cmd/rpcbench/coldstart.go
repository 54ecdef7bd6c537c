package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/concordrpc/concord/bench/internal/baseline"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
)

const (
	pollEvery      = 200 * time.Microsecond
	attemptTimeout = time.Second
	startDeadline  = 10 * time.Second
)

// A program is a binary built for the start-up rows.
type program struct {
	name string
	dir  string // module directory to build in, relative to the repository root
	pkg  string
	// args returns the arguments for serving on addr with dataDir, a fresh
	// empty directory per start (also the working directory).
	args func(addr, dataDir string) []string
}

// A startRow is one row of the start-up table: a program and the moment it
// counts as started. To add a row (coordination-ready, say), add a probe and
// a startRow; metrics that are not a duration (idle RSS) get their own
// table next to this one.
type startRow struct {
	name     string
	program  *program
	probe    probe
	baseline bool // the reference for the ratio column of rows with the same probe
}

// A probe reports whether the process serving on addr counts as started:
// new returns a check, polled every pollEvery with each attempt bounded by
// attemptTimeout, and a func that releases the check's resources.
type probe struct {
	name string
	new  func(addr string) (check func(context.Context) error, release func())
}

var (
	rawGreeterProgram = &program{name: "rawgreeter", dir: "bench", pkg: "./cmd/rawgreeter",
		args: func(addr, _ string) []string { return []string{"-addr", addr} }}
	greeterProgram = &program{name: "greeter", dir: ".", pkg: "./examples/greeter",
		args: func(addr, dataDir string) []string { return []string{"-addr", addr, "-data", dataDir} }}

	// firstGreet succeeds on the first Greet that returns the right answer,
	// sent by a plain connect-go client (Connect+proto over h2c).
	firstGreet = probe{name: "first successful Greet", new: func(addr string) (func(context.Context) error, func()) {
		hc := baseline.NewHTTPClient()
		client := greeterv1connect.NewGreeterServiceClient(connect.NewClient(connecthttp.NewTransport(hc, "http://"+addr)))
		return connectCall(client), hc.CloseIdleConnections
	}}

	// listening succeeds once a TCP connection is accepted: the rows with
	// it split start-up into process start and first call.
	listening = probe{name: "TCP connect", new: func(addr string) (func(context.Context) error, func()) {
		var d net.Dialer
		return func(ctx context.Context) error {
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return err
			}
			return c.Close()
		}, func() {}
	}}
)

func startRows() []startRow {
	return []startRow{
		{name: "raw connect-go (bench/cmd/rawgreeter)", program: rawGreeterProgram, probe: firstGreet, baseline: true},
		{name: "Concord (examples/greeter)", program: greeterProgram, probe: firstGreet},
		{name: "raw connect-go (bench/cmd/rawgreeter)", program: rawGreeterProgram, probe: listening, baseline: true},
		{name: "Concord (examples/greeter)", program: greeterProgram, probe: listening},
	}
}

func runColdStart(cfg config, out io.Writer) error {
	tmp, err := os.MkdirTemp("", "rpcbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	rows := startRows()
	bins := map[*program]string{}
	for _, r := range rows {
		if _, ok := bins[r.program]; ok {
			continue
		}
		bin, err := build(cfg.repo, tmp, r.program)
		if err != nil {
			return err
		}
		bins[r.program] = bin
	}

	times := make([][]time.Duration, len(rows))
	// Interleave the rows so that a burst of other load on the machine
	// hits them alike.
	for run := range cfg.coldRuns {
		for i, r := range rows {
			d, err := startOnce(tmp, bins[r.program], r.program.args, r.probe)
			if err != nil {
				return fmt.Errorf("cold start %s, run %d: %w", r.name, run+1, err)
			}
			times[i] = append(times[i], d)
		}
	}

	fmt.Fprintf(out, "\nCold start: time from exec to the probe succeeding, %d runs per row, interleaved; polled every %v\n",
		cfg.coldRuns, pollEvery)
	refs := map[string]time.Duration{} // baseline median by probe
	for i, r := range rows {
		slices.Sort(times[i])
		if r.baseline {
			refs[r.probe.name] = nearestRank(times[i], 0.5)
		}
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "binary\tprobe\tmedian\tp90\tmin\tmax\tvs raw (median)\t")
	for i, r := range rows {
		ts := times[i]
		vs := "-"
		if ref := refs[r.probe.name]; ref > 0 {
			vs = fmt.Sprintf("%.2f", float64(nearestRank(ts, 0.5))/float64(ref))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.name, r.probe.name,
			millis(nearestRank(ts, 0.5)), millis(nearestRank(ts, 0.9)), millis(ts[0]), millis(ts[len(ts)-1]), vs)
	}
	return tw.Flush()
}

func millis(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// nearestRank returns the nearest-rank q-quantile of sorted ts.
func nearestRank(ts []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(ts)))) - 1
	return ts[max(i, 0)]
}

// build compiles p into dir and returns the binary's path.
func build(repo, dir string, p *program) (string, error) {
	bin := filepath.Join(dir, p.name)
	cmd := exec.Command("go", "build", "-o", bin, p.pkg)
	cmd.Dir = filepath.Join(repo, p.dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s in %s: %w", p.pkg, cmd.Dir, err)
	}
	return bin, nil
}

// startOnce execs bin on a free loopback port with a fresh data directory
// under tmp, polls pr until it succeeds, kills the process and returns the
// time from exec to success.
func startOnce(tmp, bin string, args func(addr, dataDir string) []string, pr probe) (time.Duration, error) {
	addr, err := freeAddr()
	if err != nil {
		return 0, err
	}
	dataDir, err := os.MkdirTemp(tmp, "run-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dataDir)
	check, release := pr.new(addr)
	defer release()

	cmd := exec.Command(bin, args(addr, dataDir)...) // output goes to /dev/null
	cmd.Dir = dataDir
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()

	deadline := start.Add(startDeadline)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
		err := check(ctx)
		cancel()
		if err == nil {
			return time.Since(start), nil
		}
		select {
		case werr := <-exited:
			exited <- werr // for the deferred wait
			return 0, fmt.Errorf("%s exited before it answered: %v (last probe error: %w)", bin, werr, err)
		default:
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no answer within %v: %w", startDeadline, err)
		}
		time.Sleep(pollEvery)
	}
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}
