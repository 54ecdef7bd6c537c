package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/concordrpc/concord/bench/internal/baseline"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
)

// A startRow is one row of the start-up table: a program and the moment it
// counts as started. Metrics that are not a duration (idle RSS) have their
// own table (rss.go).
type startRow struct {
	name     string
	program  *program
	probe    probe
	baseline bool // the reference for the ratio column of rows with the same probe
	// target, if positive, is the most the median may take; the verdict
	// is printed under the table as target number targetNo.
	target   time.Duration
	targetNo int
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
	// greeterProgram is the example in its default, embedded mode: one
	// JetStream node in the process, state under the fresh data directory.
	greeterProgram = &program{name: "greeter", dir: ".", pkg: "./examples/greeter",
		args: func(addr, dataDir string) []string { return []string{"-addr", addr, "-data", dataDir} }}

	// firstGreet succeeds on the first Greet that returns the right answer,
	// sent by a plain connect-go client (Connect+proto over h2c).
	firstGreet = probe{name: "first successful Greet", new: func(addr string) (func(context.Context) error, func()) {
		hc := baseline.NewHTTPClient()
		client := greeterv1connect.NewGreeterServiceClient(connect.NewClient(connecthttp.NewTransport(hc, "http://"+addr)))
		return connectCall(client), hc.CloseIdleConnections
	}}

	// coordReady succeeds on the first 200 from GET /readyz, which a
	// concord.App answers once its coordination node (and local store) is
	// open. It uses the same h2c HTTP client as firstGreet.
	coordReady = probe{name: "coordination ready (GET /readyz 200)", new: func(addr string) (func(context.Context) error, func()) {
		hc := baseline.NewHTTPClient()
		url := "http://" + addr + "/readyz"
		return func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			res, err := hc.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("GET /readyz: %s", res.Status)
			}
			return nil
		}, hc.CloseIdleConnections
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

const (
	rawGreeterName = "raw connect-go (bench/cmd/rawgreeter)"
	greeterName    = "Concord embedded (examples/greeter)"
)

func startRows() []startRow {
	return []startRow{
		{name: rawGreeterName, program: rawGreeterProgram, probe: firstGreet, baseline: true},
		{name: greeterName, program: greeterProgram, probe: firstGreet, target: 10 * time.Millisecond, targetNo: 3},
		{name: greeterName, program: greeterProgram, probe: coordReady, target: 50 * time.Millisecond, targetNo: 4},
		{name: rawGreeterName, program: rawGreeterProgram, probe: listening, baseline: true},
		{name: greeterName, program: greeterProgram, probe: listening},
	}
}

func runColdStart(cfg config, tmp string, bins map[*program]string, out io.Writer) error {
	rows := startRows()
	times := make([][]time.Duration, len(rows))
	// Interleave the rows so that a burst of other load on the machine
	// hits them alike.
	for run := range cfg.coldRuns {
		for i, r := range rows {
			d, err := startOnce(tmp, bins[r.program], r.program, r.probe)
			if err != nil {
				return fmt.Errorf("cold start %s, %s, run %d: %w", r.name, r.probe.name, run+1, err)
			}
			times[i] = append(times[i], d)
		}
	}

	fmt.Fprintf(out, "\nCold start: time from exec to the probe succeeding, %d runs per row (each with a fresh data dir), interleaved; polled every %v\n",
		cfg.coldRuns, pollEvery)
	refs := map[string]time.Duration{} // baseline median by probe
	for i, r := range rows {
		slices.Sort(times[i])
		if r.baseline {
			refs[r.probe.name] = nearestRank(times[i], 0.5)
		}
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "binary\tprobe\tmedian\tp90\tmin\tmax\tvs raw (median)\ttarget\t")
	for i, r := range rows {
		ts := times[i]
		vs := "-"
		if ref := refs[r.probe.name]; ref > 0 {
			vs = fmt.Sprintf("%.2f", float64(nearestRank(ts, 0.5))/float64(ref))
		}
		target := "-"
		if r.target > 0 {
			target = "<= " + millis(r.target)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.name, r.probe.name,
			millis(nearestRank(ts, 0.5)), millis(nearestRank(ts, 0.9)), millis(ts[0]), millis(ts[len(ts)-1]), vs, target)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out, "\nTargets (cold start, embedded mode; the verdict is on the median)")
	for i, r := range rows {
		if r.target <= 0 {
			continue
		}
		ts := times[i]
		med, p90 := nearestRank(ts, 0.5), nearestRank(ts, 0.9)
		fmt.Fprintf(out, "  %d. %s within %s of exec\n", r.targetNo, r.probe.name, millis(r.target))
		fmt.Fprintf(out, "     median %s, p90 %s: %s\n", millis(med), millis(p90), durationVerdict(med, p90, r.target))
	}
	return nil
}

// durationVerdict judges a median against target and says how p90 fares.
func durationVerdict(med, p90, target time.Duration) string {
	switch {
	case p90 <= target:
		return "MET (p90 too)"
	case med <= target:
		return fmt.Sprintf("MET (p90 over by %s)", millis(p90-target))
	}
	return fmt.Sprintf("MISSED by %s (%.1fx the target; p90 over by %s)", millis(med-target), float64(med)/float64(target), millis(p90-target))
}

func millis(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// nearestRank returns the nearest-rank q-quantile of sorted ts.
func nearestRank(ts []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(ts)))) - 1
	return ts[max(i, 0)]
}

// startOnce starts p, polls pr until it succeeds, kills the process and
// returns the time from exec to success.
func startOnce(tmp, bin string, p *program, pr probe) (time.Duration, error) {
	addr, err := freeAddr()
	if err != nil {
		return 0, err
	}
	// The client is built before exec, so that the time is the server's.
	check, release := pr.new(addr)
	defer release()
	proc, err := startProcess(tmp, bin, p, addr)
	if err != nil {
		return 0, err
	}
	defer proc.stop()
	return proc.waitFor(check)
}
