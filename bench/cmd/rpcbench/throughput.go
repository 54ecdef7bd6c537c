package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/concordrpc/concord/bench/internal/baseline"
	"google.golang.org/protobuf/proto"
)

// summary is a row's result at one concurrency: the median of each metric
// over the rounds.
type summary struct {
	sys      system
	conc     int
	rps      float64
	spread   float64 // (max-min)/median of req/s over the rounds
	p50, p99 time.Duration
	cpu      time.Duration
	cpus     []time.Duration // CPU/call of each round, in round order
	errors   int
	firstErr error
}

func runThroughput(cfg config, out io.Writer) error {
	var rows []system
	for _, s := range systems() {
		if cfg.rows.MatchString(s.key()) {
			rows = append(rows, s)
		}
	}
	if len(rows) == 0 {
		return errors.New("-rows matches no row")
	}
	if cfg.cpuProfile != "" {
		if err := os.MkdirAll(cfg.cpuProfile, 0o755); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "\nUnary Greet over loopback: request %d bytes, response %d bytes (protobuf); %v warm-up, %v measured per row, %d round(s)\n",
		proto.Size(baseline.Request()), proto.Size(baseline.Response()), cfg.warmup, cfg.duration, cfg.count)

	results := map[string][]*result{} // by row key and concurrency
	for round := range cfg.count {
		// Odd rounds run the rows backwards, so that a drift in the
		// machine's load does not always favour the same rows.
		order := slices.Clone(rows)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			for _, c := range cfg.conc {
				r, err := measure(cfg, s, c, round)
				if err != nil {
					return fmt.Errorf("%s at concurrency %d: %w", s.key(), c, err)
				}
				fmt.Fprintf(os.Stderr, "  round %d  %-30s c=%-3d %9.0f req/s  errors %d\n", round+1, s.key(), c, r.rps(), r.errors)
				k := resultKey(s.key(), c)
				results[k] = append(results[k], r)
			}
		}
	}

	var sums []summary
	for _, s := range rows {
		for _, c := range cfg.conc {
			sums = append(sums, summarize(s, c, results[resultKey(s.key(), c)]))
		}
	}
	printTable(out, sums)
	printTargets(out, sums)
	return nil
}

func resultKey(row string, conc int) string { return fmt.Sprintf("%s@%d", row, conc) }

// measure starts a fresh instance of s, checks one call, loads it and
// closes it.
func measure(cfg config, s system, conc, round int) (*result, error) {
	inst, err := s.start()
	if err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	if err := checkHTTP(s, inst); err != nil {
		return nil, errors.Join(err, inst.close())
	}
	// Collect the garbage of start-up (a Concord server builds its
	// validator on the first call) and of earlier rows, so that no row pays
	// for another's.
	runtime.GC()
	var profile *os.File
	if cfg.cpuProfile != "" {
		name := strings.NewReplacer(" ", "_", "+", "-").Replace(s.key())
		if cfg.count > 1 {
			name += fmt.Sprintf("-r%d", round+1)
		}
		profile, err = os.Create(filepath.Join(cfg.cpuProfile, fmt.Sprintf("%s-c%d.pprof", name, conc)))
		if err != nil {
			return nil, errors.Join(err, inst.close())
		}
		defer profile.Close()
	}
	var w io.Writer
	if profile != nil {
		w = profile
	}
	r, err := runLoad(inst.call, conc, cfg.warmup, cfg.duration, w)
	if cerr := inst.close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close: %w", cerr))
	}
	return r, err
}

// checkHTTP makes one call and checks that it used the HTTP version the
// row claims.
func checkHTTP(s system, inst *instance) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx, _ = connect.NewClientContext(ctx)
	if err := inst.call(ctx); err != nil {
		return fmt.Errorf("first call: %w", err)
	}
	info, ok := connecthttp.ClientInfoForContext(ctx)
	if !ok {
		return nil // grpc-go: always HTTP/2
	}
	want := "HTTP/1.1"
	if s.http == "h2c" {
		want = "HTTP/2.0"
	}
	if got := info.ResponseProto(); got != want {
		return fmt.Errorf("row claims %s but the call used %s", s.http, got)
	}
	return nil
}

func summarize(s system, conc int, rs []*result) summary {
	sum := summary{sys: s, conc: conc}
	sum.rps = median(rs, func(r *result) float64 { return r.rps() })
	lo, hi := rs[0].rps(), rs[0].rps()
	for _, r := range rs {
		lo, hi = min(lo, r.rps()), max(hi, r.rps())
	}
	sum.spread = (hi - lo) / sum.rps
	sum.p50 = time.Duration(median(rs, func(r *result) float64 { return float64(r.quantile(0.50)) }))
	sum.p99 = time.Duration(median(rs, func(r *result) float64 { return float64(r.quantile(0.99)) }))
	sum.cpu = time.Duration(median(rs, func(r *result) float64 { return float64(r.cpuPerCall()) }))
	for _, r := range rs {
		sum.cpus = append(sum.cpus, r.cpuPerCall())
	}
	for _, r := range rs {
		sum.errors += r.errors
		if sum.firstErr == nil {
			sum.firstErr = r.firstErr
		}
	}
	return sum
}

func median(rs []*result, f func(*result) float64) float64 {
	vs := make([]float64, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

// find returns the summary of row key at conc, or nil.
func find(sums []summary, key string, conc int) *summary {
	for i := range sums {
		if sums[i].sys.key() == key && sums[i].conc == conc {
			return &sums[i]
		}
	}
	return nil
}

func ratio(sums []summary, s summary, key string) string {
	ref := find(sums, key, s.conc)
	if ref == nil || ref.rps == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", s.rps/ref.rps)
}

const (
	refGRPC = grpcGo + " " + grpcProto + " " + h2c
	// concordDefault is Concord's Connect+proto row on its default client.
	concordDefault = concord + " " + connectProto + " " + http1 + " " + defaultClient
	// concordObserved is concordDefault with metrics and tracing on.
	concordObserved = concordDefault + ", " + observed
	// concordH2C is the same forced onto h2c.
	concordH2C = concord + " " + connectProto + " " + h2c
)

// rawSame is the key of the raw connect-go row with s's protocol and HTTP
// version and no deadline, or "" if s is that row.
func rawSame(s system) string {
	k := rawConnect + " " + s.protocol + " " + s.http
	if k == s.key() {
		return ""
	}
	return k
}

// rawDeadline is the key of the raw connect-go Connect+proto row with a 2s
// deadline on s's HTTP version, or "" where it does not compare.
func rawDeadline(s system) string {
	if s.protocol != connectProto || s.server == rawConnect {
		return ""
	}
	return rawConnect + " " + connectProto + " " + s.http + " " + withDeadline
}

// rawH2C is the key of the raw connect-go row with s's protocol over h2c, or
// "" if s is h2c: what the HTTP version alone changes.
func rawH2C(s system) string {
	if s.http == h2c {
		return ""
	}
	return rawConnect + " " + s.protocol + " " + h2c
}

func ratioTo(sums []summary, s summary, key string) string {
	if key == "" {
		return "-"
	}
	return ratio(sums, s, key)
}

func printTable(out io.Writer, sums []summary) {
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tclient protocol\tHTTP\tdeadline\tconc\treq/s\tspread\tp50\tp99\tCPU/call\tvs grpc-go\tvs raw same\tvs raw+deadline\tvs raw h2c\terrors\t")
	for _, s := range sums {
		server := s.sys.server
		if s.sys.variant != "" && s.sys.variant != withDeadline {
			server += " (" + s.sys.variant + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%.0f\t%.0f%%\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n",
			server, s.sys.protocol, s.sys.http, s.sys.deadline, s.conc, s.rps, s.spread*100,
			micros(s.p50), micros(s.p99), micros(s.cpu),
			ratio(sums, s, refGRPC), ratioTo(sums, s, rawSame(s.sys)), ratioTo(sums, s, rawDeadline(s.sys)),
			ratioTo(sums, s, rawH2C(s.sys)), s.errors)
	}
	tw.Flush()
	fmt.Fprintln(out, "\nreq/s, p50, p99 and CPU/call are medians over the rounds; spread is (max-min)/median of req/s over the rounds.")
	fmt.Fprintln(out, "deadline: what the client puts on each call. Concord's client sets the greeter's declared 2s timeout; the raw")
	fmt.Fprintln(out, "connect-go rows with \"2s\" do the same by hand (context.WithTimeout per call), so they have the deadline's cost")
	fmt.Fprintln(out, "(client timer, timeout header, server-side deadline context) without anything else Concord adds.")
	fmt.Fprintln(out, "Ratios are of req/s at the same concurrency. vs grpc-go: over grpc-go; vs raw same: over raw connect-go with")
	fmt.Fprintln(out, "the same protocol and HTTP version and no deadline; vs raw+deadline: Concord Connect+proto over raw connect-go")
	fmt.Fprintln(out, "Connect+proto with a 2s deadline on the same HTTP version (what Concord adds beyond the deadline); vs raw h2c:")
	fmt.Fprintln(out, "over raw connect-go with the same protocol on h2c (what HTTP/1.1 changes). CPU/call: user+system CPU of the")
	fmt.Fprintln(out, "whole process (client and server) per call. HTTP/1.1 rows use a keep-alive pool (one connection per call in")
	fmt.Fprintln(out, "flight, up to 128), as rpc.NewConn's default client does for Connect and gRPC-Web unary calls; h2c rows use")
	fmt.Fprintln(out, "one HTTP/2 connection. Concord (default client) rows use rpc.NewConn as is; the other Concord rows force h2c")
	fmt.Fprintln(out, "with rpc.WithHTTPVersion(rpc.HTTPVersion2).")
	for _, s := range sums {
		if s.errors > 0 {
			fmt.Fprintf(out, "errors in %s at concurrency %d, first: %v\n", s.sys.key(), s.conc, s.firstErr)
		}
	}
}

func micros(d time.Duration) string {
	return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
}

// printTargets states the performance targets and whether this run met
// them.
func printTargets(out io.Writer, sums []summary) {
	fmt.Fprintln(out, "\nTargets")
	fmt.Fprintln(out, "  1. Concord with the full default chain costs at most 5% vs raw connect-go on the same HTTP version")
	fmt.Fprintln(out, "     (Connect+proto req/s ratio >= 0.95)")
	for _, key := range []string{concordDefault, concordH2C} {
		for _, s := range sums {
			if s.sys.key() != key {
				continue
			}
			label := fmt.Sprintf("%s, conc %d", s.sys.http, s.conc)
			ref := find(sums, rawSame(s.sys), s.conc)
			if ref == nil {
				fmt.Fprintf(out, "     %s: not measured (raw connect-go row skipped)\n", label)
				continue
			}
			fmt.Fprintf(out, "     %-16s %s\n", label, costLine(s, *ref))
			// The same budget against the baseline that pays for deadlines
			// too: what the framework costs beyond that feature.
			if ref := find(sums, rawDeadline(s.sys), s.conc); ref != nil {
				fmt.Fprintf(out, "       vs raw connect-go with a 2s deadline: %s\n", costLine(s, *ref))
			}
		}
	}
	fmt.Fprintln(out, "  2. Concord's default client (Connect+proto) >= grpc-go: at concurrency 1 at least 1.00 (done when 0.80),")
	fmt.Fprintln(out, "     at concurrency 64 at least 0.80")
	for _, t := range []struct {
		conc   int
		target float64
	}{{1, 1.0}, {1, 0.8}, {64, 0.8}} {
		s, ref := find(sums, concordDefault, t.conc), find(sums, refGRPC, t.conc)
		if s == nil || ref == nil {
			fmt.Fprintf(out, "     conc %d: not measured (needs both rows)\n", t.conc)
			continue
		}
		r := s.rps / ref.rps
		fmt.Fprintf(out, "     conc %-3d >= %.2f: %.0f vs %.0f req/s: ratio %.3f: %s%s; CPU/call %s vs %s\n",
			t.conc, t.target, s.rps, ref.rps, r, verdict(r, t.target), noisy(*s, *ref), micros(s.cpu), micros(ref.cpu))
	}
	fmt.Fprintln(out, "  6. Metrics and tracing (OTLP exporter configured, sampling off) cost at most 3% CPU per call over the")
	fmt.Fprintln(out, "     full-chain row (Concord Connect+proto, default client)")
	for _, s := range sums {
		if s.sys.key() != concordObserved {
			continue
		}
		ref := find(sums, concordDefault, s.conc)
		if ref == nil || ref.cpu == 0 {
			fmt.Fprintf(out, "     conc %d: not measured (full-chain row skipped)\n", s.conc)
			continue
		}
		d := float64(s.cpu)/float64(ref.cpu) - 1
		fmt.Fprintf(out, "     conc %-3d CPU/call %s vs %s: %+.1f%%: %s; req/s %.0f vs %.0f (%+.1f%%)%s\n",
			s.conc, micros(s.cpu), micros(ref.cpu), d*100, costVerdict(d, 0.03), s.rps, ref.rps, (s.rps/ref.rps-1)*100, noisy(s, *ref))
		// The two rows run next to each other in every round, so the
		// ratio within a round cancels most of the drift in the machine's
		// load between rounds.
		if pd, per, ok := pairedDelta(s.cpus, ref.cpus); ok {
			fmt.Fprintf(out, "              paired by round: median %+.1f%% (rounds: %s)\n", pd*100, per)
		}
	}
}

// costLine compares s with ref on req/s, the target's measure, and on CPU
// per call, which other load on the machine disturbs far less.
func costLine(s, ref summary) string {
	r := s.rps / ref.rps
	return fmt.Sprintf("%.0f vs %.0f req/s: ratio %.3f, Concord costs %.1f%%: %s%s; CPU/call %s vs %s (%+.1f%%)",
		s.rps, ref.rps, r, (1-r)*100, verdict(r, 0.95), noisy(s, ref),
		micros(s.cpu), micros(ref.cpu), (float64(s.cpu)/float64(ref.cpu)-1)*100)
}

// maxSpread is the req/s spread over rounds above which a verdict on req/s
// is flagged: other load on the machine moved the rows more than the
// budget being judged.
const maxSpread = 0.20

func noisy(rows ...summary) string {
	worst := 0.0
	for _, s := range rows {
		worst = max(worst, s.spread)
	}
	if worst <= maxSpread {
		return ""
	}
	return fmt.Sprintf(" (UNRELIABLE: req/s spread up to %.0f%%)", worst*100)
}

// pairedDelta returns the median over rounds of a/b-1, and each round's,
// when both rows have the same rounds.
func pairedDelta(a, b []time.Duration) (float64, string, bool) {
	if len(a) != len(b) || len(a) == 0 {
		return 0, "", false
	}
	ds := make([]float64, len(a))
	var per []string
	for i := range a {
		if b[i] == 0 {
			return 0, "", false
		}
		ds[i] = float64(a[i])/float64(b[i]) - 1
		per = append(per, fmt.Sprintf("%+.1f%%", ds[i]*100))
	}
	slices.Sort(ds)
	m := ds[len(ds)/2]
	if len(ds)%2 == 0 {
		m = (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
	}
	return m, strings.Join(per, " "), true
}

// costVerdict judges a relative cost d (0.02 is 2% more) against a
// budget.
func costVerdict(d, budget float64) string {
	if d <= budget {
		return "MET"
	}
	return fmt.Sprintf("MISSED by %.1f points (budget %.0f%%)", (d-budget)*100, budget*100)
}

func verdict(ratio, target float64) string {
	if ratio >= target {
		return "MET"
	}
	return fmt.Sprintf("MISSED by %.1f points (needs %.2f)", (target-ratio)*100, target)
}
