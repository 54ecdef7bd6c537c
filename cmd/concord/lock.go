package main

import (
	"context"
	"encoding/json"
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
	base := c.base
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+concord.LocksPath+url.PathEscape(name)+"/"+args[0]+query, nil)
	if err != nil {
		return usageError{fmt.Sprintf("-addr: %v", err)}
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	var out struct {
		Error         string `json:"error"`
		Token         uint64 `json:"token"`
		Holder        string `json:"holder"`
		HeldForMillis int64  `json:"held_for_ms"`
	}
	if json.Unmarshal(data, &out) != nil || (res.StatusCode != http.StatusOK && out.Error == "") {
		return fmt.Errorf("lock: %s answered %s (is it a Concord app's admin listener?)", base, res.Status)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("lock %s: %s", args[0], out.Error)
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
