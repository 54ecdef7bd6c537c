package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
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

// idleCalls is how many Greets each idle-RSS run makes before it idles.
const idleCalls = 10

// An rssRow is one row of the idle-RSS table: a program and the probe after
// which it counts as started.
type rssRow struct {
	name    string
	program *program
	ready   probe
	// target, if positive, is the most the median VmRSS may be, in
	// bytes; the verdict is printed as target number targetNo.
	target   uint64
	targetNo int
}

func rssRows() []rssRow {
	return []rssRow{
		{name: rawGreeterName, program: rawGreeterProgram, ready: firstGreet},
		{name: greeterName, program: greeterProgram, ready: coordReady, target: 40 << 20, targetNo: 5},
	}
}

// memory is what /proc/<pid>/status says about a process's memory, in
// bytes.
type memory struct {
	rss, hwm, anon, file uint64 // VmRSS, VmHWM, RssAnon, RssFile
}

func runIdleRSS(cfg config, tmp string, bins map[*program]string, out io.Writer) error {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		fmt.Fprintf(out, "\nIdle RSS: skipped, it reads /proc/<pid>/status (%v)\n", err)
		return nil
	}
	rows := rssRows()
	mems := make([][]memory, len(rows))
	for run := range cfg.rssRuns {
		for i, r := range rows {
			m, err := idleOnce(cfg, tmp, bins[r.program], r)
			if err != nil {
				return fmt.Errorf("idle RSS %s, run %d: %w", r.name, run+1, err)
			}
			mems[i] = append(mems[i], m)
		}
	}

	fmt.Fprintf(out, "\nIdle RSS: fresh data dir, wait until ready, %d Greets, then %v idle; /proc/<pid>/status, %d runs per row, interleaved\n",
		idleCalls, cfg.idle, cfg.rssRuns)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "binary\tready when\tVmRSS median\tmin\tmax\tRssAnon\tRssFile\tVmHWM\tvs raw (median)\ttarget\t")
	var ref uint64
	for i, r := range rows {
		ms := mems[i]
		med := medianMem(ms, func(m memory) uint64 { return m.rss })
		if i == 0 {
			ref = med
		}
		lo, hi := ms[0].rss, ms[0].rss
		for _, m := range ms {
			lo, hi = min(lo, m.rss), max(hi, m.rss)
		}
		target := "-"
		if r.target > 0 {
			target = "<= " + mib(r.target)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t\n", r.name, r.ready.name,
			mib(med), mib(lo), mib(hi),
			mib(medianMem(ms, func(m memory) uint64 { return m.anon })),
			mib(medianMem(ms, func(m memory) uint64 { return m.file })),
			mib(medianMem(ms, func(m memory) uint64 { return m.hwm })),
			float64(med)/float64(ref), target)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "RssAnon, RssFile and VmHWM are medians too. RssAnon is heap, stacks and other private memory;")
	fmt.Fprintln(out, "RssFile is mostly the binary's pages that were touched. VmHWM is the peak RSS.")

	fmt.Fprintln(out, "\nTargets (idle RSS)")
	for i, r := range rows {
		if r.target == 0 {
			continue
		}
		med := medianMem(mems[i], func(m memory) uint64 { return m.rss })
		v := "MET"
		if med > r.target {
			v = fmt.Sprintf("MISSED by %s", mib(med-r.target))
		}
		fmt.Fprintf(out, "  %d. %s: idle RSS at most %s\n", r.targetNo, r.name, mib(r.target))
		fmt.Fprintf(out, "     median VmRSS %s: %s\n", mib(med), v)
	}
	return nil
}

// idleOnce starts r's program, waits until it is ready, makes idleCalls
// Greets, idles and reads the process's memory.
func idleOnce(cfg config, tmp, bin string, r rssRow) (memory, error) {
	addr, err := freeAddr()
	if err != nil {
		return memory{}, err
	}
	ready, releaseReady := r.ready.new(addr)
	defer releaseReady()
	proc, err := startProcess(tmp, bin, r.program, addr)
	if err != nil {
		return memory{}, err
	}
	defer proc.stop()
	if _, err := proc.waitFor(ready); err != nil {
		return memory{}, err
	}
	releaseReady()

	hc := baseline.NewHTTPClient()
	client := greeterv1connect.NewGreeterServiceClient(connect.NewClient(connecthttp.NewTransport(hc, "http://"+addr)))
	call := connectCall(client)
	for range idleCalls {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := call(ctx)
		cancel()
		if err != nil {
			return memory{}, fmt.Errorf("Greet: %w", err)
		}
	}
	// Idle means no connection either.
	hc.CloseIdleConnections()

	select {
	case err := <-proc.exited:
		proc.exited <- err
		return memory{}, fmt.Errorf("exited while idle: %v", err)
	case <-time.After(cfg.idle):
	}
	return readMemory(proc.cmd.Process.Pid)
}

// readMemory reads the memory fields of /proc/<pid>/status.
func readMemory(pid int) (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	var m memory
	fields := map[string]*uint64{"VmRSS": &m.rss, "VmHWM": &m.hwm, "RssAnon": &m.anon, "RssFile": &m.file}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		dst := fields[key]
		if !ok || dst == nil {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("/proc/%d/status %s: %w", pid, key, err)
		}
		*dst = kb << 10
		delete(fields, key)
	}
	if err := sc.Err(); err != nil {
		return memory{}, err
	}
	if len(fields) > 0 {
		return memory{}, errors.New("/proc/<pid>/status lacks VmRSS, VmHWM, RssAnon or RssFile")
	}
	return m, nil
}

// medianMem returns the median of f over ms (the mean of the middle two for
// an even count).
func medianMem(ms []memory, f func(memory) uint64) uint64 {
	vs := make([]uint64, len(ms))
	for i, m := range ms {
		vs[i] = f(m)
	}
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
