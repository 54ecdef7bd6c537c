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

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/msg"
)

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
		var out concord.DeadLetterList
		if err := c.do(ctx, http.MethodGet, path+q, nil, &out); err != nil {
			return fmt.Errorf("dead-letters list: %w", err)
		}
		if asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(append([]concord.DeadLetterEntry{}, out.DeadLetters...))
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
			var out concord.DeadLetterResult
			err := c.do(ctx, http.MethodPost, path+"/all/"+sub, nil, &out)
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
	var out concord.DeadLetterResult
	err := c.do(ctx, http.MethodPost, path+"/"+strconv.FormatUint(seq, 10)+"/"+sub, nil, &out)
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
