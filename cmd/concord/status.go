package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/coord/registry"
	"github.com/concordrpc/concord/coord/txlog"
	"github.com/concordrpc/concord/msg/msgstatus"
)

// statusSections are the parts `concord status SECTION` prints alone, in
// the order the full status prints them.
var statusSections = []string{"nodes", "services", "locks", "limits", "breakers", "transactions", "messages"}

// sectionKeys are the top-level JSON fields of each section, for -json.
var sectionKeys = map[string][]string{
	"nodes":        {"mode", "node", "meta_leader", "meta_leader_unknown", "peers", "buckets"},
	"services":     {"services", "services_unknown"},
	"locks":        {"locks"},
	"limits":       {"limits"},
	"breakers":     {"breakers"},
	"transactions": {"transactions"},
	"messages":     {"messages"},
}

// minWatchInterval bounds how often -watch reads the status.
const minWatchInterval = 100 * time.Millisecond

// statusCmd prints the coordination status of a running app or node, as a
// table or, with -json, as indented JSON; all of it or one section; once
// or, with -watch, redrawn every -interval until ctx ends.
func statusCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "http://127.0.0.1:9080", "base URL of a running app's admin listener (its -admin address), or of a node's -http endpoint")
	asJSON := fs.Bool("json", false, "print the status (or the section's part of it) as JSON (pretty-printed) instead of a table")
	watch := fs.Bool("watch", false, "redraw the status every -interval until interrupted (Ctrl-C)")
	interval := fs.Duration("interval", 2*time.Second, "with -watch: how often to read the status again (at least 100ms)")
	count := fs.Int("count", 0, "with -watch: stop after this many reads (0: until interrupted)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageError{err.Error()}
	}
	section := ""
	switch {
	case len(pos) > 1:
		return usageError{"status takes at most one SECTION: " + strings.Join(statusSections, ", ")}
	case len(pos) == 1:
		section = pos[0]
		if !slices.Contains(statusSections, section) {
			return usageError{fmt.Sprintf("unknown status section %q (want one of %s)", section, strings.Join(statusSections, ", "))}
		}
	}
	if *interval < minWatchInterval || *count < 0 {
		return usageError{fmt.Sprintf("-interval %v: want at least %v; -count %d: want 0 or more", *interval, minWatchInterval, *count)}
	}
	base := strings.TrimSuffix(*addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	render := func(w io.Writer) error {
		st, body, err := fetchStatus(ctx, base)
		if err != nil {
			return err
		}
		if *asJSON {
			return printStatusJSON(w, body, section)
		}
		printSections(w, st, section)
		return nil
	}
	if !*watch {
		return render(stdout)
	}
	return watchStatus(ctx, stdout, render, *asJSON, *interval, *count)
}

// watchStatus renders the status every interval until ctx ends (or count
// reads, if count > 0). A table redraws the terminal (clears it first); JSON
// prints one document per read, for a pipe. A read that fails is shown in
// place of the status, and the watch goes on: the app or node may be
// restarting.
func watchStatus(ctx context.Context, stdout io.Writer, render func(io.Writer) error, asJSON bool, interval time.Duration, count int) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 1; ; i++ {
		var frame bytes.Buffer
		if !asJSON {
			frame.WriteString("\x1b[H\x1b[2J") // cursor home, clear screen
			fmt.Fprintf(&frame, "%s (every %v; Ctrl-C to stop)\n\n", time.Now().Format(time.TimeOnly), interval)
		}
		if err := render(&frame); err != nil {
			var usage usageError
			if errors.As(err, &usage) {
				return err // a bad -addr: no later read can succeed
			}
			if ctx.Err() != nil {
				return nil
			}
			if asJSON {
				frame.Reset()
				_ = json.NewEncoder(&frame).Encode(map[string]string{"error": err.Error()})
			} else {
				fmt.Fprintf(&frame, "error: %v\n", err)
			}
		}
		if _, err := stdout.Write(frame.Bytes()); err != nil {
			return err
		}
		if count > 0 && i >= count {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// fetchStatus reads the status endpoint at base (bounded by 10s) and
// returns it parsed and as it was sent.
func fetchStatus(ctx context.Context, base string) (*concord.Status, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/concord/status", nil)
	if err != nil {
		return nil, nil, usageError{fmt.Sprintf("-addr: %v", err)}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("status: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("status: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, nil, fmt.Errorf("status: %s: %s", base, e.Error)
		}
		return nil, nil, fmt.Errorf("status: %s answered %s", base, res.Status)
	}
	st := &concord.Status{Status: &registry.Status{Status: &coord.Status{}}}
	if err := json.Unmarshal(body, st); err != nil {
		return nil, nil, fmt.Errorf("status: %s did not answer with a Concord status: %w", base, err)
	}
	return st, body, nil
}

// printStatusJSON prints body indented: all of it, or only the fields of
// section (one field's value as it is; several as an object). A section
// the endpoint does not report (limits and breakers from a node) prints
// null.
func printStatusJSON(w io.Writer, body []byte, section string) error {
	var out bytes.Buffer
	if section == "" {
		_ = json.Indent(&out, bytes.TrimSpace(body), "", "  ") // valid: it parsed
	} else {
		var all map[string]json.RawMessage
		if err := json.Unmarshal(body, &all); err != nil {
			return fmt.Errorf("status: %w", err)
		}
		var part any = all[sectionKeys[section][0]]
		if keys := sectionKeys[section]; len(keys) > 1 {
			obj := map[string]json.RawMessage{}
			for _, k := range keys {
				if v, ok := all[k]; ok {
					obj[k] = v
				}
			}
			part = obj
		} else if all[keys[0]] == nil {
			part = nil
		}
		data, err := json.MarshalIndent(part, "", "  ")
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		out.Write(data)
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}

// printStatus prints a coordination status (a node's) as a table.
func printStatus(w io.Writer, st *registry.Status) {
	printSections(w, &concord.Status{Status: st}, "")
}

// printSections prints st as tables, all sections or one; a part the node
// could not read in time shows as "?" and its reason is listed under
// "unknown:".
func printSections(w io.Writer, st *concord.Status, section string) {
	all := section == ""
	var unknown []string
	if all || section == "nodes" {
		unknown = append(unknown, printNodes(w, st.Status.Status)...)
	}
	if all || section == "services" {
		if st.ServicesUnknown != "" {
			unknown = append(unknown, "services: "+st.ServicesUnknown)
		}
		if len(st.Services) > 0 {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "\nSERVICE\tINSTANCE\tADDRESS\tZONE\tREADY")
			for _, s := range st.Services {
				for _, in := range s.Instances {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\n", s.Name, in.ID, in.BaseURL, in.Zone, in.Ready)
				}
			}
			tw.Flush()
		} else if !all && st.ServicesUnknown == "" {
			fmt.Fprintln(w, "no services registered")
		}
	}
	if all || section == "locks" {
		unknown = append(unknown, printLocks(w, st.Locks, all)...)
	}
	if all || section == "limits" {
		printLimits(w, st, all)
	}
	if all || section == "breakers" {
		printBreakers(w, st, all)
	}
	if all || section == "transactions" {
		if tx := st.Transactions; tx != nil {
			if tx.Unknown != "" {
				unknown = append(unknown, "transactions: "+tx.Unknown)
			}
			printTransactions(w, tx)
			if !all && tx.Unknown == "" && len(tx.InFlight)+len(tx.Stuck)+len(tx.Finished) == 0 {
				fmt.Fprintln(w, "no transactions in flight, stuck or recently finished")
			}
		} else if !all {
			fmt.Fprintln(w, "transactions: not reported by this endpoint")
		}
	}
	if all || section == "messages" {
		if m := st.Messages; m != nil {
			unknown = append(unknown, printMessages(w, m)...)
		} else if !all {
			fmt.Fprintln(w, "messages: not reported by this endpoint")
		}
	}
	if len(unknown) > 0 {
		fmt.Fprintln(w, "\nunknown:")
		for _, u := range unknown {
			fmt.Fprintln(w, "  "+u)
		}
	}
}

// printNodes prints the mode, the node, the meta leader, the peers and
// the buckets, and returns the reasons of the parts it could not read.
func printNodes(w io.Writer, st *coord.Status) (unknown []string) {
	leader := st.MetaLeader
	if leader == "" {
		leader = "? (" + cmp.Or(st.MetaLeaderUnknown, "not reported") + ")"
	}
	fmt.Fprintf(w, "mode:        %s\nnode:        %s\nmeta leader: %s\n", st.Mode, st.Node, leader)
	if len(st.Peers) > 0 {
		fmt.Fprintln(w, "nodes:")
		for _, p := range st.Peers {
			state := strings.ReplaceAll(string(p.State), "_", " ")
			if p.Reason != "" {
				state += ": " + p.Reason
			}
			fmt.Fprintf(w, "  %s (%s)\n", p.Name, state)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUCKET\tKIND\tREPLICAS\tLEADER\tMESSAGES\tBYTES")
	for _, b := range st.Buckets {
		replicas, leader, messages, size := fmt.Sprint(b.Replicas), cmp.Or(b.Leader, "?"), fmt.Sprint(b.Messages), fmt.Sprint(b.Bytes)
		if b.Unknown != "" {
			unknown = append(unknown, b.Name+": "+b.Unknown)
			if b.Replicas == 0 { // not read at all
				replicas, messages, size = "?", "?", "?"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Name, b.Kind, replicas, leader, messages, size)
	}
	tw.Flush()
	return unknown
}

// millis prints a time left in milliseconds as a duration, "-" if unknown.
func millis(ms int64) string {
	if ms < 0 {
		return "-"
	}
	return (time.Duration(ms) * time.Millisecond).Round(100 * time.Millisecond).String()
}

// waiting formats a lock's or election's count of waiters: "?" when
// unknown (-1).
func waiting(n int) string {
	if n < 0 {
		return "?"
	}
	return strconv.Itoa(n)
}

// printLocks prints the held locks and the elections' leaders, and returns
// why they could not be read, if so. In the full status (all) nothing is
// printed for no locks.
func printLocks(w io.Writer, l *lock.Status, all bool) (unknown []string) {
	switch {
	case l == nil:
		if !all {
			fmt.Fprintln(w, "locks: not reported by this endpoint")
		}
		return nil
	case l.Unknown != "":
		return []string{"locks: " + l.Unknown}
	}
	if len(l.Held) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nLOCK\tHOLDER\tTOKEN\tEXPIRES IN\tWAITING")
		for _, h := range l.Held {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", h.Name, h.Holder, h.Token, millis(h.ExpiresInMillis), waiting(h.Waiting))
		}
		tw.Flush()
	} else if !all {
		fmt.Fprintln(w, "no locks held")
	}
	if len(l.Elections) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nELECTION\tLEADER\tTERM\tEXPIRES IN\tWAITING")
		for _, e := range l.Elections {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", e.Name, e.Leader, e.Token, millis(e.ExpiresInMillis), waiting(e.Waiting))
		}
		tw.Flush()
	} else if !all {
		fmt.Fprintln(w, "no election has a leader")
	}
	if l.Truncated {
		fmt.Fprintf(w, "(only the first %d of each, by name)\n", lock.MaxStatusEntries)
	}
	return nil
}

// noTable reports whether a per-app section has no rows to print: the
// endpoint did not report it (a node's), or it is empty. Shown on its own
// (not all), the section then says which, in notReported or none.
func noTable(w io.Writer, all, reported bool, rows int, notReported, none string) bool {
	switch {
	case !reported:
	case rows == 0:
		notReported = none
	default:
		return false
	}
	if !all {
		fmt.Fprintln(w, notReported)
	}
	return true
}

// printLimits prints the app's rate limits with their counts.
func printLimits(w io.Writer, st *concord.Status, all bool) {
	if noTable(w, all, st.Limits != nil, len(st.Limits),
		"limits: not reported by this endpoint (limits are per app: -addr an app's admin listener)", "no rate limits") {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nLIMIT\tALGORITHM\tSCOPE\tRATE\tBURST\tADMITTED\tREFUSED\tSATURATION")
	for _, l := range st.Limits {
		rate := fmt.Sprintf("%d/%v", l.Rate, time.Duration(l.PerMillis)*time.Millisecond)
		scope := l.Scope
		if l.Borrowed > 0 {
			scope += fmt.Sprintf(" (%d borrowed)", l.Borrowed)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%.0f%%\n", l.Procedure, l.Algorithm, scope, rate, l.Burst, l.Admitted, l.Refused, 100*l.Saturation)
	}
	tw.Flush()
}

// printBreakers prints the circuit breakers of the app's upstream
// instances.
func printBreakers(w io.Writer, st *concord.Status, all bool) {
	if noTable(w, all, st.Breakers != nil, len(st.Breakers),
		"breakers: not reported by this endpoint (breakers are per app: -addr an app's admin listener)", "no upstream instances called yet") {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nUPSTREAM\tINSTANCE\tADDRESS\tBREAKER\tFAILURES")
	for _, b := range st.Breakers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", b.Service, b.Instance, b.Address, strings.ReplaceAll(b.State, "_", "-"), b.Failures)
	}
	tw.Flush()
}

// printTransactions prints the TCC transactions in flight, stuck and
// recently finished, with the last error of each failing branch.
func printTransactions(w io.Writer, tx *txlog.Status) {
	if len(tx.InFlight)+len(tx.Stuck)+len(tx.Finished) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nTRANSACTION\tSTATE\tAGE\tBRANCHES\tATTEMPTS\tCOORDINATOR")
	now := time.Now()
	row := func(kind string, r *txlog.Record) {
		services := make([]string, len(r.Branches))
		for i, b := range r.Branches {
			services[i] = b.Service
			if b.Done {
				services[i] += " (done)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", r.ID, kind, now.Sub(r.Created).Round(time.Millisecond),
			strings.Join(services, ", "), r.Attempts, cmp.Or(r.Coordinator, "-"))
	}
	for _, r := range tx.InFlight {
		row(string(r.State), r)
	}
	for _, r := range tx.Stuck {
		row("stuck "+string(r.State), r)
	}
	for _, r := range tx.Finished {
		row(string(r.State), r)
	}
	tw.Flush()
	for _, r := range append(append([]*txlog.Record{}, tx.Stuck...), tx.InFlight...) {
		if r.Cause != "" {
			fmt.Fprintf(w, "  %s: %s\n", r.ID, r.Cause)
		}
		for _, b := range r.Branches {
			if b.Error != "" {
				fmt.Fprintf(w, "  %s branch %s (%s): %s\n", r.ID, b.ID, b.Service, b.Error)
			}
		}
	}
	for _, r := range tx.Finished {
		if r.Cause != "" {
			fmt.Fprintf(w, "  %s: %s\n", r.ID, r.Cause)
		}
	}
}

// printMessages prints the message consumers, the dead-letter count and
// the outboxes of the process that answered, and returns the reasons of
// the parts it could not read.
func printMessages(w io.Writer, m *msgstatus.Status) (unknown []string) {
	if m.ConsumersUnknown != "" {
		unknown = append(unknown, "message consumers: "+m.ConsumersUnknown)
	}
	if len(m.Consumers) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nCONSUMER\tTOPIC\tPENDING\tIN FLIGHT\tREDELIVERED")
		for _, c := range m.Consumers {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", c.Name, c.Topic, c.Pending, c.InFlight, c.Redelivered)
		}
		tw.Flush()
	}
	if m.DeadLettersUnknown != "" {
		unknown = append(unknown, "dead letters: "+m.DeadLettersUnknown)
	} else if m.DeadLetters > 0 || len(m.Consumers) > 0 {
		hint := ""
		if m.DeadLetters > 0 {
			hint = " (concord dead-letters list)"
		}
		fmt.Fprintf(w, "\ndead letters: %d%s\n", m.DeadLetters, hint)
	}
	if len(m.Outboxes) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nOUTBOX\tSTORE\tROWS\tOLDEST")
		for _, o := range m.Outboxes {
			rows, oldest := fmt.Sprint(o.Rows), "-"
			switch {
			case o.Unknown != "":
				rows, oldest = "?", "?"
				unknown = append(unknown, "outbox "+o.Instance+" ("+o.Store+"): "+o.Unknown)
			case o.Rows > 0:
				oldest = (time.Duration(o.OldestAgeMillis) * time.Millisecond).String() + " ago"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Instance, o.Store, rows, oldest)
		}
		tw.Flush()
	}
	return unknown
}
