package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/registry"
	"github.com/concordrpc/concord/coord/txlog"
	"github.com/concordrpc/concord/msg/msgstatus"
)

// statusCmd prints the coordination status of a running app or node, as a
// table or, with -json, as indented JSON.
func statusCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "http://127.0.0.1:9080", "base URL of a running app's admin listener (its -admin address), or of a node's -http endpoint")
	asJSON := fs.Bool("json", false, "print the status as JSON (pretty-printed) instead of a table")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() != 0 {
		return usageError{"status takes flags only"}
	}
	base := strings.TrimSuffix(*addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/concord/status", nil)
	if err != nil {
		return usageError{fmt.Sprintf("-addr: %v", err)}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("status: %s: %s", base, e.Error)
		}
		return fmt.Errorf("status: %s answered %s", base, res.Status)
	}
	st := registry.Status{Status: &coord.Status{}}
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("status: %s did not answer with a Concord status: %w", base, err)
	}
	if *asJSON {
		var out bytes.Buffer
		_ = json.Indent(&out, bytes.TrimSpace(body), "", "  ") // valid: it parsed above
		out.WriteByte('\n')
		_, err := stdout.Write(out.Bytes())
		return err
	}
	printStatus(stdout, &st)
	return nil
}

// printStatus prints st as a table; a part the node could not read in
// time shows as "?" and its reason is listed under "unknown:".
func printStatus(w io.Writer, st *registry.Status) {
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
	var unknown []string
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUCKET\tKIND\tREPLICAS\tLEADER\tMESSAGES")
	for _, b := range st.Buckets {
		replicas, leader, messages := fmt.Sprint(b.Replicas), cmp.Or(b.Leader, "?"), fmt.Sprint(b.Messages)
		if b.Unknown != "" {
			unknown = append(unknown, b.Name+": "+b.Unknown)
			if b.Replicas == 0 { // not read at all
				replicas, messages = "?", "?"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Name, b.Kind, replicas, leader, messages)
	}
	tw.Flush()
	if st.ServicesUnknown != "" {
		unknown = append(unknown, "services: "+st.ServicesUnknown)
	}
	if len(st.Services) > 0 {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nSERVICE\tINSTANCE\tADDRESS\tZONE\tREADY")
		for _, s := range st.Services {
			for _, in := range s.Instances {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\n", s.Name, in.ID, in.BaseURL, in.Zone, in.Ready)
			}
		}
		tw.Flush()
	}
	if tx := st.Transactions; tx != nil {
		if tx.Unknown != "" {
			unknown = append(unknown, "transactions: "+tx.Unknown)
		}
		printTransactions(w, tx)
	}
	if m := st.Messages; m != nil {
		unknown = append(unknown, printMessages(w, m)...)
	}
	if len(unknown) > 0 {
		fmt.Fprintln(w, "\nunknown:")
		for _, u := range unknown {
			fmt.Fprintln(w, "  "+u)
		}
	}
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
