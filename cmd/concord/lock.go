package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord/lock"
)

// lockCmd runs `concord lock hold|release NAME` against an App's admin
// listener (concord.LocksPath): hold returns once the app holds the lock,
// and the app keeps holding it for -for.
func lockCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "hold" && args[0] != "release") {
		return usageError{"lock needs a command: hold or release"}
	}
	fs := flag.NewFlagSet("lock "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr, creds, as := adminFlags(fs)
	var holdFor *time.Duration
	if args[0] == "hold" {
		holdFor = fs.Duration("for", time.Minute, fmt.Sprintf("how long the app holds the lock (1s to %v)", concord.MaxLockHold))
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return usageError{err.Error()}
	}
	if len(pos) != 1 {
		return usageError{fmt.Sprintf("lock %s takes one NAME", args[0])}
	}
	name := pos[0]
	if err := lock.CheckName(name); err != nil {
		return usageError{err.Error()}
	}
	query := ""
	if holdFor != nil {
		if *holdFor < time.Second || *holdFor > concord.MaxLockHold {
			return usageError{fmt.Sprintf("-for %v: want 1s to %v", *holdFor, concord.MaxLockHold)}
		}
		query = "?for=" + url.QueryEscape(holdFor.String())
	}
	c, err := newAdminClient(*addr, *creds, *as)
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var out concord.LockHold
	if err := c.do(ctx, http.MethodPost, concord.LocksPath+url.PathEscape(name)+"/"+args[0]+query, nil, &out); err != nil {
		return fmt.Errorf("lock %s: %w", args[0], err)
	}
	if args[0] == "release" {
		fmt.Fprintf(stdout, "%s released\n", name)
		return nil
	}
	d := time.Duration(out.HeldForMillis) * time.Millisecond
	fmt.Fprintf(stdout, "%s held by %s, token %d, for %v (until %s; concord lock release %s ends it sooner)\n",
		name, out.Holder, out.Token, d, time.Now().Add(d).Format(time.TimeOnly), name)
	return nil
}
