package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
	rawGreeterName    = "raw connect-go (bench/cmd/rawgreeter)"
	greeterName       = "Concord embedded (examples/greeter)"
	greeterClientName = "Concord client mode (examples/greeter -nats)"
)

// greeterClientProgram is the greeter in client mode: it connects to the
// `concord node` at natsURL (started before the rows) instead of starting
// a node of its own. Each start gets its own name, as replicas do.
func greeterClientProgram(natsURL string) *program {
	return &program{name: greeterProgram.name, dir: greeterProgram.dir, pkg: greeterProgram.pkg,
		args: func(addr, dataDir string) []string {
			return []string{"-addr", addr, "-data", dataDir, "-nats", natsURL, "-name", "bench-" + filepath.Base(dataDir)}
		},
		env: []string{"CONCORD_NATS_PASSWORD=" + nodePassword}}
}

func startRows(client *program) []startRow {
	return []startRow{
		{name: rawGreeterName, program: rawGreeterProgram, probe: firstGreet, baseline: true},
		{name: greeterName, program: greeterProgram, probe: firstGreet, target: 10 * time.Millisecond, targetNo: 3},
		{name: greeterClientName, program: client, probe: firstGreet, target: 10 * time.Millisecond, targetNo: 3},
		{name: greeterName, program: greeterProgram, probe: coordReady, target: 50 * time.Millisecond, targetNo: 4},
		{name: greeterClientName, program: client, probe: coordReady, target: 50 * time.Millisecond, targetNo: 4},
		{name: rawGreeterName, program: rawGreeterProgram, probe: listening, baseline: true},
		{name: greeterName, program: greeterProgram, probe: listening},
		{name: greeterClientName, program: client, probe: listening},
	}
}

func runColdStart(cfg config, tmp string, bins map[*program]string, out io.Writer) error {
	// Client mode: one `concord node` for all its starts, running before
	// the first, so that only the service's own start is timed.
	nodeBins, err := buildPrograms(cfg.repo, tmp, concordProgram)
	if err != nil {
		return err
	}
	nd, err := startNode(tmp, nodeBins[concordProgram])
	if err != nil {
		return err
	}
	defer nd.stop()
	client := greeterClientProgram(nd.url)
	bins[client] = bins[greeterProgram]
	// One unmeasured start creates the node's buckets and streams, which
	// every later instance finds in place, as in a running cluster.
	if _, err := startOnce(tmp, bins[client], client, coordReady); err != nil {
		return fmt.Errorf("cold start, client-mode warm-up: %w", err)
	}

	rows := startRows(client)
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
	inits, err := measureInit(cfg.coldRuns, map[string]string{
		rawGreeterName: bins[rawGreeterProgram], greeterName: bins[greeterProgram],
	})
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "\nCold start: time from exec to the probe succeeding, %d runs per row (each with a fresh data dir), interleaved; polled every %v; client mode against a concord node started before the rows\n",
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

	// The breakdown: medians of the rows above, and of the init runs.
	med := func(name string, pr probe) (time.Duration, bool) { return rowMedian(rows, times, name, pr) }
	fmt.Fprintf(out, "\nStart-up breakdown (medians; package init: sum of GODEBUG=inittrace=1 over %d runs of `<binary> -h`, which exits at flag parsing; exec->exit is the same runs' wall time)\n", cfg.coldRuns)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "binary\tpackage init\texec->exit at -h\texec->listener up\tlistener up->first Greet\texec->first Greet\texec->coordination ready\t")
	for _, name := range []string{rawGreeterName, greeterName, greeterClientName} {
		in := inits[name]
		if name == greeterClientName {
			in = inits[greeterName] // the same binary
		}
		tcp, _ := med(name, listening)
		first, _ := med(name, firstGreet)
		coord := "-"
		if d, ok := med(name, coordReady); ok {
			coord = millis(d)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, millis(in.init), millis(in.exit),
			millis(tcp), millis(first-tcp), millis(first), coord)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out, "\nTargets (cold start, embedded and client mode; the verdict is on the median)")
	for i, r := range rows {
		if r.target <= 0 {
			continue
		}
		ts := times[i]
		med, p90 := nearestRank(ts, 0.5), nearestRank(ts, 0.9)
		fmt.Fprintf(out, "  %d. %s: %s within %s of exec\n", r.targetNo, r.name, r.probe.name, millis(r.target))
		fmt.Fprintf(out, "     median %s, p90 %s: %s\n", millis(med), millis(p90), durationVerdict(med, p90, r.target))
		if r.probe.name == firstGreet.name && med > r.target {
			ref := refs[r.probe.name]
			tcp, _ := rowMedian(rows, times, r.name, listening)
			rawTCP, _ := rowMedian(rows, times, rawGreeterName, listening)
			fmt.Fprintf(out, "     why: Concord adds %s to raw connect-go's %s in this run (%.2fx): package init %s (raw %s), exec->listener %s (raw %s), listener->first Greet %s (raw %s)\n",
				millis(med-ref), millis(ref), float64(med)/float64(ref), millis(inits[greeterName].init), millis(inits[rawGreeterName].init),
				millis(tcp), millis(rawTCP), millis(med-tcp), millis(ref-rawTCP))
			if ref > r.target {
				fmt.Fprintf(out, "     raw connect-go alone misses the target by %s on this machine now: the ratio and the breakdown, not the absolute time, show Concord's share\n", millis(ref-r.target))
			}
		}
	}
	return nil
}

// rowMedian returns the median of the row of binary name with probe pr.
func rowMedian(rows []startRow, times [][]time.Duration, name string, pr probe) (time.Duration, bool) {
	for i, r := range rows {
		if r.name == name && r.probe.name == pr.name {
			return nearestRank(times[i], 0.5), true
		}
	}
	return 0, false
}

// initTimes are the medians of a binary's init runs.
type initTimes struct {
	init time.Duration // package initialisation, summed from GODEBUG=inittrace=1
	exit time.Duration // exec to exit
}

// measureInit runs each binary runs times (interleaved) with -h, which
// exits at flag parsing, under GODEBUG=inittrace=1, and returns, by name,
// the median sum of the reported init times and the median wall time.
func measureInit(runs int, bins map[string]string) (map[string]initTimes, error) {
	names := slices.Sorted(maps.Keys(bins))
	inits := map[string][]time.Duration{}
	exits := map[string][]time.Duration{}
	for range runs {
		for _, name := range names {
			cmd := exec.Command(bins[name], "-h")
			cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			start := time.Now()
			if err := cmd.Run(); err != nil {
				return nil, fmt.Errorf("%s -h: %w", bins[name], err)
			}
			exits[name] = append(exits[name], time.Since(start))
			d, err := sumInitTrace(stderr.String())
			if err != nil {
				return nil, fmt.Errorf("%s -h: %w", bins[name], err)
			}
			inits[name] = append(inits[name], d)
		}
	}
	res := map[string]initTimes{}
	for _, name := range names {
		slices.Sort(inits[name])
		slices.Sort(exits[name])
		res[name] = initTimes{init: nearestRank(inits[name], 0.5), exit: nearestRank(exits[name], 0.5)}
	}
	return res, nil
}

// sumInitTrace adds up the clock times of GODEBUG=inittrace=1 lines:
// "init <pkg> @<t> ms, <clock> ms clock, <bytes> bytes, <allocs> allocs".
func sumInitTrace(trace string) (time.Duration, error) {
	var sum float64
	n := 0
	for line := range strings.Lines(trace) {
		f := strings.Fields(line)
		if len(f) < 7 || f[0] != "init" || f[6] != "clock," {
			continue
		}
		ms, err := strconv.ParseFloat(f[4], 64)
		if err != nil {
			return 0, fmt.Errorf("inittrace line %q: %w", line, err)
		}
		sum += ms
		n++
	}
	if n == 0 {
		return 0, errors.New("no inittrace lines")
	}
	return time.Duration(sum * float64(time.Millisecond)), nil
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
