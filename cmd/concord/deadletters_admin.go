package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/internal/admincreds"
	"github.com/concordrpc/concord/msg"
)

// adminClient calls a running app's admin routes with an admin
// credential.
type adminClient struct {
	base  string // the listener's base URL, without a trailing slash
	token string // sent as a bearer token
}

// newAdminClient reads the credential from the file creds (the one named
// as, if the file holds several) for the admin listener at addr.
func newAdminClient(addr, creds, as string) (*adminClient, error) {
	cs, err := admincreds.Read(creds)
	if err != nil {
		return nil, fmt.Errorf("admin credentials: %w (-creds names the file; an app writes %s in its data directory)", err, concord.AdminCredentialsFile)
	}
	cred, err := admincreds.Pick(cs, as)
	if err != nil {
		return nil, usageError{fmt.Sprintf("-creds %s: %v (-as NAME picks one)", creds, err)}
	}
	base := strings.TrimSuffix(addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &adminClient{base: base, token: cred.Token}, nil
}

// adminError is an admin route's error answer.
type adminError struct {
	code  int
	msg   string
	route bool // the answer came from the route (JSON {"error"}), not a listener without it
}

func (e *adminError) Error() string { return e.msg }

// do sends a request without a body to path and decodes the JSON answer
// into out, also for an error answer; a status other than 200 is an
// *adminError.
func (c *adminClient) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return usageError{fmt.Sprintf("-addr: %v", err)}
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil {
		return err
	}
	var e struct {
		Error string `json:"error"`
	}
	if res.StatusCode != http.StatusOK {
		route, _, _ := strings.Cut(path, "?")
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			return &adminError{code: res.StatusCode, msg: fmt.Sprintf("%s answered %s (is it a Concord app's admin listener, of a version with %s?)", c.base, res.Status, route)}
		}
		_ = json.Unmarshal(data, out)
		return &adminError{code: res.StatusCode, msg: e.Error, route: true}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s answered %s without the expected JSON: %w", c.base, res.Status, err)
	}
	return nil
}

// adminDeadLetter is a dead letter as the list route serves it.
type adminDeadLetter struct {
	Seq              uint64    `json:"seq"`
	Consumer         string    `json:"consumer"`
	Topic            string    `json:"topic"`
	Key              string    `json:"key,omitempty"`
	ID               string    `json:"id"`
	Deliveries       int       `json:"deliveries"`
	Error            string    `json:"error"`
	Written          time.Time `json:"written,omitzero"`
	Time             time.Time `json:"time"`
	PayloadSize      int       `json:"payload_size"`
	Payload          string    `json:"payload_base64"`
	PayloadTruncated bool      `json:"payload_truncated,omitempty"`
}

// adminDeadLetterOp is the answer of a replay or a discard.
type adminDeadLetterOp struct {
	Done   int      `json:"done"`
	Failed int      `json:"failed"`
	Errors []string `json:"errors"`
	More   bool     `json:"more"`
}

// adminDeadLetters runs a dead-letters subcommand through an app's admin
// listener.
func adminDeadLetters(ctx context.Context, c *adminClient, sub string, seq uint64, all bool, from uint64, limit int, asJSON bool, stdout io.Writer) error {
	path := concord.DeadLettersPath
	switch {
	case sub == "list":
		q := "?limit=" + strconv.Itoa(limit)
		if from > 0 {
			q += "&from=" + strconv.FormatUint(from, 10)
		}
		var out struct {
			DeadLetters []adminDeadLetter `json:"dead_letters"`
		}
		if err := c.do(ctx, http.MethodGet, path+q, &out); err != nil {
			return fmt.Errorf("dead-letters list: %w", err)
		}
		if asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(append([]adminDeadLetter{}, out.DeadLetters...))
		}
		dls := make([]msg.DeadLetter, 0, len(out.DeadLetters))
		for _, d := range out.DeadLetters {
			p, _ := base64.StdEncoding.DecodeString(d.Payload)
			dls = append(dls, msg.DeadLetter{Seq: d.Seq, ID: d.ID, Topic: d.Topic, Key: d.Key, Payload: p, Consumer: d.Consumer,
				Error: d.Error, Deliveries: d.Deliveries, Written: d.Written, Time: d.Time})
		}
		printDeadLetters(dls, limit, stdout)
		return nil
	case all:
		// One call works through a bounded number; call again while the
		// app says more remain and the last call got on.
		total := 0
		for {
			var out adminDeadLetterOp
			err := c.do(ctx, http.MethodPost, path+"/all/"+sub, &out)
			total += out.Done
			if err != nil {
				fmt.Fprintf(stdout, "%s %d dead letters\n", past(sub), total)
				if len(out.Errors) > 0 {
					return fmt.Errorf("%d dead letters not %s:\n%s", out.Failed, past(sub), strings.Join(out.Errors, "\n"))
				}
				return fmt.Errorf("dead-letters %s -all: %w", sub, err)
			}
			if !out.More || out.Done == 0 {
				fmt.Fprintf(stdout, "%s %d dead letters\n", past(sub), total)
				return nil
			}
		}
	}
	var out adminDeadLetterOp
	err := c.do(ctx, http.MethodPost, path+"/"+strconv.FormatUint(seq, 10)+"/"+sub, &out)
	var aerr *adminError
	switch {
	case errors.As(err, &aerr) && aerr.route && aerr.code == http.StatusNotFound:
		return fmt.Errorf("dead letter %d not found: it was replayed or discarded, or never existed (see dead-letters list)", seq)
	case errors.As(err, &aerr) && aerr.route && aerr.code == http.StatusConflict:
		return fmt.Errorf("dead letter %d is malformed (it has no valid message ID or topic) and cannot be replayed; discard it: %w", seq, err)
	case err != nil:
		return fmt.Errorf("dead letter %d: %w", seq, err)
	}
	fmt.Fprintf(stdout, "%s dead letter %d\n", past(sub), seq)
	return nil
}
