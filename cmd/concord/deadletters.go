package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/msg"
)

// deadLettersCmd lists, replays or discards the dead letters of the
// CONCORD_DEAD_LETTERS stream. With -nats it connects to the NATS servers
// as an app in client mode does; without, it calls a running app's admin
// listener (concord.DeadLettersPath) with an admin credential, as
// `concord config` does, which also reaches an app in embedded mode.
func deadLettersCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dead-letters", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "http://127.0.0.1:9080", "base URL of a running app's admin listener (its -admin address); used unless -nats is given")
	urls := fs.String("nats", "", "URLs of the NATS servers (a concord node's -listen address), comma-separated: talk to them instead of an app's admin listener")
	user := fs.String("user", cmp.Or(os.Getenv("CONCORD_NATS_USER"), "concord"), "with -nats: NATS username (env CONCORD_NATS_USER)")
	password := fs.String("password", os.Getenv("CONCORD_NATS_PASSWORD"), "with -nats: NATS password (env CONCORD_NATS_PASSWORD)")
	creds := fs.String("creds", "", "without -nats: the app's admin credentials file (lines of \"name token\"; default env CONCORD_ADMIN_CREDS, else "+
		filepath.Join(coord.DefaultDataDir, concord.AdminCredentialsFile)+"); with -nats: a NATS credentials file, instead of -user and -password")
	as := fs.String("as", "", "without -nats: the name of the admin credential to use, when the file holds several")
	all := fs.Bool("all", false, "replay or discard every dead letter")
	from := fs.Uint64("from", 0, "list: the first sequence to list")
	limit := fs.Int("limit", 100, fmt.Sprintf("list: how many to list, at most %d (%d through an admin listener)", msg.MaxListed, concord.MaxDeadLettersListed))
	asJSON := fs.Bool("json", false, "list: print JSON (payloads in base64; through an admin listener at most 1 KiB of each) instead of a table")
	timeout := fs.Duration("timeout", 30*time.Second, "bound on the whole command")
	// Flags may come before or after the subcommand.
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		return usageError{"dead-letters needs list, replay or discard"}
	}
	sub := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return usageError{err.Error()}
	}
	var seq uint64
	switch {
	case sub != "list" && sub != "replay" && sub != "discard":
		return usageError{fmt.Sprintf("dead-letters: unknown subcommand %q (want list, replay or discard)", sub)}
	case sub == "list" && (fs.NArg() != 0 || *all):
		return usageError{"dead-letters list takes flags only"}
	case sub == "list":
	case sub != "list" && *all && fs.NArg() == 0:
	case sub != "list" && !*all && fs.NArg() == 1:
		n, err := strconv.ParseUint(fs.Arg(0), 10, 64)
		if err != nil || n == 0 {
			return usageError{fmt.Sprintf("dead-letters %s: %q is not a sequence number (see dead-letters list)", sub, fs.Arg(0))}
		}
		seq = n
	default:
		return usageError{fmt.Sprintf("dead-letters %s needs one sequence number (SEQ) or -all", sub)}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if !set["nats"] {
		switch {
		case set["user"] || set["password"]:
			return usageError{"dead-letters: -user and -password are for -nats; an app's admin listener takes -creds (and -as)"}
		case sub == "list" && (*limit < 1 || *limit > concord.MaxDeadLettersListed):
			return usageError{fmt.Sprintf("dead-letters list: -limit %d: want 1 to %d through an admin listener", *limit, concord.MaxDeadLettersListed)}
		}
		c, err := newAdminClient(*addr, cmp.Or(*creds, os.Getenv("CONCORD_ADMIN_CREDS"), filepath.Join(coord.DefaultDataDir, concord.AdminCredentialsFile)), *as)
		if err != nil {
			return err
		}
		return adminDeadLetters(ctx, c, sub, seq, *all, *from, *limit, *asJSON, stdout)
	}
	switch {
	case set["addr"] || set["as"]:
		return usageError{"dead-letters: -addr and -as are for an app's admin listener; with -nats, leave them out"}
	case *urls == "":
		return usageError{"dead-letters: -nats needs the URLs of the NATS servers"}
	}
	auth := coord.ClientAuth{Username: *user, Password: *password}
	if *creds != "" {
		auth = coord.ClientAuth{CredsFile: *creds}
	}
	node, err := coord.Open(ctx, coord.WithClient(splitList(*urls), auth),
		coord.WithLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))))
	if err != nil {
		return fmt.Errorf("dead-letters: cannot reach %s: %w", *urls, err)
	}
	defer node.Close()

	switch {
	case sub == "list":
		return listDeadLetters(ctx, node, *from, *limit, *asJSON, stdout)
	case *all:
		return allDeadLetters(ctx, node, sub, stdout)
	}
	if err := oneDeadLetter(ctx, node, sub, seq); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s dead letter %d\n", past(sub), seq)
	return nil
}

func past(sub string) string {
	if sub == "replay" {
		return "replayed"
	}
	return "discarded"
}

// oneDeadLetter replays or discards dead letter seq, with an error that
// says what to do.
func oneDeadLetter(ctx context.Context, node *coord.Node, sub string, seq uint64) error {
	var err error
	if sub == "replay" {
		err = msg.Replay(ctx, node, seq)
	} else {
		err = msg.Discard(ctx, node, seq)
	}
	switch {
	case errors.Is(err, msg.ErrNotFound):
		return fmt.Errorf("dead letter %d not found: it was replayed or discarded, or never existed (see dead-letters list)", seq)
	case errors.Is(err, msg.ErrInvalid):
		return fmt.Errorf("dead letter %d is malformed (it has no valid message ID or topic) and cannot be replayed; discard it: %w", seq, err)
	case err != nil:
		return fmt.Errorf("dead letter %d: %w", seq, err)
	}
	return nil
}

// allDeadLetters replays or discards every dead letter, oldest first. A
// malformed one is not replayed; it is reported and the others go on.
func allDeadLetters(ctx context.Context, node *coord.Node, sub string, stdout io.Writer) error {
	done, failed := 0, 0
	var errs []error
	for from := uint64(0); ; {
		page, err := msg.DeadLetters(ctx, node, from, msg.MaxListed)
		if err != nil {
			errs = append(errs, err)
			break
		}
		if len(page) == 0 {
			break
		}
		for _, d := range page {
			if err := oneDeadLetter(ctx, node, sub, d.Seq); err != nil {
				failed++
				errs = append(errs, err)
				if ctx.Err() != nil {
					break
				}
				continue
			}
			done++
		}
		from = page[len(page)-1].Seq + 1
		if ctx.Err() != nil {
			break
		}
	}
	fmt.Fprintf(stdout, "%s %d dead letters\n", past(sub), done)
	if len(errs) > 0 {
		return fmt.Errorf("%d dead letters not %s:\n%w", max(failed, 1), past(sub), errors.Join(errs...))
	}
	return nil
}

// listDeadLetters prints up to limit dead letters from sequence from.
func listDeadLetters(ctx context.Context, node *coord.Node, from uint64, limit int, asJSON bool, stdout io.Writer) error {
	dls, err := msg.DeadLetters(ctx, node, from, limit)
	if err != nil {
		return fmt.Errorf("dead-letters list: %w", err)
	}
	if asJSON {
		if dls == nil {
			dls = []msg.DeadLetter{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(dls)
	}
	printDeadLetters(dls, limit, stdout)
	return nil
}

// printDeadLetters prints dls as a table, and where to read on when there
// may be more than limit.
func printDeadLetters(dls []msg.DeadLetter, limit int, stdout io.Writer) {
	if len(dls) == 0 {
		fmt.Fprintln(stdout, "no dead letters")
		return
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tSTORED\tCONSUMER\tTOPIC\tKEY\tDELIVERIES\tID\tERROR")
	for _, d := range dls {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Seq, d.Time.UTC().Format(time.RFC3339), printable(d.Consumer),
			cmp.Or(printable(d.Topic), "? (malformed)"), cmp.Or(printable(d.Key), "-"), d.Deliveries, cmp.Or(d.ID, "-"), printable(d.Error))
	}
	tw.Flush()
	if len(dls) == limit {
		fmt.Fprintf(stdout, "more may follow: -from %d\n", dls[len(dls)-1].Seq+1)
	}
}

// printable quotes s if it holds anything that would break a table line
// or a terminal (keys and errors come from users and handlers).
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || r == '\t' }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
