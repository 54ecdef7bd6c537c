package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/concordrpc/concord"
)

// configCmd runs `concord config get|set|history|rollback NAME ...`
// against an App's admin listener.
func configCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"config needs a command: get, set, history or rollback"}
	}
	fs := flag.NewFlagSet("config "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr, creds, as := adminFlags(fs)
	var (
		expect *string
		limit  *int
	)
	want := 1 // positional arguments after the command
	switch args[0] {
	case "get":
	case "history":
		limit = fs.Int("limit", 0, "show at most this many versions, newest first (0: all kept)")
	case "set", "rollback":
		want = 2
		expect = fs.String("expect", "", "the version this write replaces, 0 to create (default: the current version, read first)")
	default:
		return usageError{fmt.Sprintf("unknown config command %q (want get, set, history or rollback)", args[0])}
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return usageError{err.Error()}
	}
	if len(pos) != want {
		return usageError{fmt.Sprintf("config %s takes %d argument(s): %s", args[0], want, map[string]string{
			"get": "NAME", "history": "NAME", "set": "NAME JSON", "rollback": "NAME VERSION"}[args[0]])}
	}
	ac, err := newAdminClient(*addr, *creds, *as)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	c := &configClient{ac: ac, name: pos[0]}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	switch args[0] {
	case "get":
		e, err := c.get(ctx)
		var serr *statusError
		if errors.As(err, &serr) && serr.code == http.StatusNotFound && !serr.unknownType {
			return fmt.Errorf("%s has no version yet (an app that reads it serves its default); create one with concord config set %[1]s JSON", c.name)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n%s\n", e.Value, describe(e))
		return nil
	case "history":
		return c.history(ctx, *limit, stdout)
	}
	exp, read, err := c.expect(ctx, *expect)
	if err != nil {
		return err
	}
	var w concord.ConfigWrite
	if args[0] == "set" {
		err = c.do(ctx, http.MethodPut, "?expect="+strconv.FormatUint(exp, 10), strings.NewReader(pos[1]), &w)
	} else {
		version, perr := strconv.ParseUint(pos[1], 10, 64)
		if perr != nil {
			return usageError{fmt.Sprintf("config rollback: VERSION %q is not a version number", pos[1])}
		}
		err = c.do(ctx, http.MethodPost, "/rollback?version="+pos[1]+"&expect="+strconv.FormatUint(exp, 10), nil, &w)
		w.Restored = version
	}
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("%s: version %d", c.name, w.Version)
	if w.Restored != 0 {
		msg += fmt.Sprintf(" (the value of version %d)", w.Restored)
	}
	switch {
	case w.Replaced == 0:
		msg += ", the first"
	case read:
		msg += fmt.Sprintf(", replaced version %d (the current one, read first)", w.Replaced)
	default:
		msg += fmt.Sprintf(", replaced version %d", w.Replaced)
	}
	fmt.Fprintln(stdout, msg)
	return nil
}

// configClient calls one config's routes on an admin listener.
type configClient struct {
	ac   *adminClient
	name string
}

func (c *configClient) get(ctx context.Context) (*concord.ConfigEntry, error) {
	var e concord.ConfigEntry
	if err := c.do(ctx, http.MethodGet, "", nil, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// expect returns the version a write replaces: the -expect flag, or the
// current version (0 if the config has none), read = true.
func (c *configClient) expect(ctx context.Context, flagValue string) (v uint64, read bool, err error) {
	if flagValue != "" {
		v, err := strconv.ParseUint(flagValue, 10, 64)
		if err != nil {
			return 0, false, usageError{fmt.Sprintf("-expect %q is not a version number", flagValue)}
		}
		return v, false, nil
	}
	e, err := c.get(ctx)
	var serr *statusError
	if errors.As(err, &serr) && serr.code == http.StatusNotFound && !serr.unknownType {
		return 0, true, nil
	}
	if err != nil {
		return 0, false, err
	}
	return e.Version, true, nil
}

func (c *configClient) history(ctx context.Context, limit int, w io.Writer) error {
	var es []concord.ConfigEntry
	if err := c.do(ctx, http.MethodGet, "/history?limit="+strconv.Itoa(limit), nil, &es); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tWRITTEN\tWRITER\tVALUE")
	for _, e := range es {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.Version, e.Time.Local().Format(time.DateTime), e.Writer, e.Value)
	}
	return tw.Flush()
}

// describe is a version's line under its value.
func describe(e *concord.ConfigEntry) string {
	return fmt.Sprintf("version %d (%s), written by %s at %s", e.Version, e.Type, e.Writer, e.Time.Local().Format(time.RFC3339))
}

// statusError is an admin listener's error answer.
type statusError struct {
	name        string
	code        int
	msg         string
	violations  []string
	current     uint64
	unknownType bool // a 404 about the type rather than the config
}

func (e *statusError) Error() string {
	var b strings.Builder
	switch {
	case e.code == http.StatusBadRequest && len(e.violations) > 0:
		b.WriteString(e.name + ": refused by the validation rules of its type, nothing written; violations:")
		for _, v := range e.violations {
			b.WriteString("\n  " + v)
		}
		return b.String()
	}
	b.WriteString(e.msg)
	switch e.code {
	case http.StatusConflict:
		b.WriteString("\nsomeone else wrote it first: read it (concord config get) and retry with -expect")
		if e.current != 0 {
			fmt.Fprintf(&b, " %d", e.current)
		}
	}
	return b.String()
}

// do sends one request to the config's route suffix and decodes the
// answer into out; an error answer of the route is a *statusError.
func (c *configClient) do(ctx context.Context, method, suffix string, body io.Reader, out any) error {
	err := c.ac.do(ctx, method, concord.ConfigPath+url.PathEscape(c.name)+suffix, body, out)
	var aerr *adminError
	if errors.As(err, &aerr) && aerr.route {
		e := aerr.body
		return &statusError{name: c.name, code: aerr.code, msg: e.Error, violations: e.Violations, current: e.Current,
			unknownType: strings.Contains(e.Error, "not linked") || strings.Contains(e.Error, "no handle")}
	}
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}
