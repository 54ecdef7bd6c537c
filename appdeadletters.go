package concord

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/msg"
)

// DeadLettersPath is the prefix of an App's admin routes for the dead
// letters of durable messages (package msg's CONCORD_DEAD_LETTERS stream),
// for `concord dead-letters` and the console, so that an App in embedded
// mode, which has no NATS listener, can have its dead letters replayed:
//
//	GET  /concord/dead-letters?from=SEQ&limit=N   list, oldest first
//	POST /concord/dead-letters/{seq}/replay       replay one to its topic
//	POST /concord/dead-letters/{seq}/discard      delete one
//	POST /concord/dead-letters/all/replay         replay every one
//	POST /concord/dead-letters/all/discard        delete every one
//
// Like the config routes (ConfigPath) they need an admin credential sent
// as "Authorization: Bearer <token>", else 401; the credential's name is
// logged with each replay and discard. The list answers JSON
// {"dead_letters": [...], "next": SEQ} with at most limit entries (default
// 100, at most MaxDeadLettersListed) from sequence from (default the
// first); next is set when more may follow. Each entry has its sequence,
// consumer, topic, key, message ID, delivery count, error, the times the
// message was written and stored, its payload's size and at most its
// first 1 KiB in base64. Replay and discard answer {"seq", "done"}; the
// all forms {"done", "failed", "errors"}, working through at most
// maxDeadLettersPerCall dead letters per call ("more": true says to call
// again). Errors are JSON {"error": ...}: 400 for a parameter that is not
// a sequence number or a limit in range, 404 for a dead letter that does
// not exist (already replayed or discarded), 409 for one too malformed to
// replay (discard it), 500 when an all form left some undone, and 503
// while coordination is unavailable.
const DeadLettersPath = "/concord/dead-letters"

// MaxDeadLettersListed bounds the limit of the DeadLettersPath list.
const MaxDeadLettersListed = 500

// defaultDeadLettersListed is the list's limit without ?limit.
const defaultDeadLettersListed = 100

// maxDeadLetterPayload bounds the payload bytes the list shows per entry.
const maxDeadLetterPayload = 1024

// maxDeadLettersPerCall bounds the dead letters one all-replay or
// all-discard call works through, so that a call ends in bounded time.
const maxDeadLettersPerCall = 10000

// maxDeadLetterErrors bounds the errors an all-replay or all-discard
// answer lists.
const maxDeadLetterErrors = 10

// DeadLetterEntry is one dead letter as the DeadLettersPath list route
// serves it (and `concord dead-letters list -json` prints it).
type DeadLetterEntry struct {
	// Seq, Consumer, Key, ID, Deliveries, Error, Written and Time are
	// msg.DeadLetter's (times in UTC).
	Seq        uint64    `json:"seq"`
	Consumer   string    `json:"consumer"`
	Topic      string    `json:"topic"` // empty for a malformed dead letter
	Key        string    `json:"key,omitempty"`
	ID         string    `json:"id"`
	Deliveries int       `json:"deliveries"`
	Error      string    `json:"error"`
	Written    time.Time `json:"written,omitzero"`
	Time       time.Time `json:"time"`
	// PayloadSize is the payload's size in bytes; Payload is its first
	// 1024 bytes at most, base64, and PayloadTruncated says it was cut.
	PayloadSize      int    `json:"payload_size"`
	Payload          string `json:"payload_base64"`
	PayloadTruncated bool   `json:"payload_truncated,omitempty"`
}

// DeadLetterList is the DeadLettersPath list route's answer.
type DeadLetterList struct {
	// DeadLetters are the dead letters listed, oldest first.
	DeadLetters []DeadLetterEntry `json:"dead_letters"`
	// Next is the from of the next page, if more may follow.
	Next uint64 `json:"next,omitempty"`
}

// DeadLetterResult is the answer of a DeadLettersPath replay or discard,
// of one dead letter or of all.
type DeadLetterResult struct {
	// Seq is the dead letter's, for one; 0 for all.
	Seq uint64 `json:"seq,omitempty"`
	// Done and Failed count the dead letters replayed or discarded and
	// those that failed; Errors holds the first few failures' reasons.
	Done   int      `json:"done"`
	Failed int      `json:"failed,omitempty"`
	Errors []string `json:"errors,omitempty"`
	// More says an "all" call stopped at its time bound with dead
	// letters left: call again.
	More bool `json:"more,omitempty"`
	// Error says why the operation failed, if it did.
	Error string `json:"error,omitempty"`
}

// mountDeadLetterAdmin adds the DeadLettersPath routes behind the admin
// credentials (the file mountConfigAdmin made sure of).
func (a *App) mountDeadLetterAdmin(mux *http.ServeMux) {
	guard := adminGuard(a.adminCredsPath())
	mux.Handle("GET "+DeadLettersPath, guard(a.serveDeadLetters))
	for _, op := range []string{"replay", "discard"} {
		mux.Handle("POST "+DeadLettersPath+"/{seq}/"+op, guard(func(w http.ResponseWriter, r *http.Request, who string) {
			a.serveDeadLetterOp(w, r, who, op)
		}))
	}
}

// deadLetterNode returns the App's node, waiting a bounded time for one
// that is starting.
func (a *App) deadLetterNode(ctx context.Context) (*coord.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	node, err := a.Node(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", coord.ErrUnavailable, errStarting)
	}
	return node, err
}

func (a *App) serveDeadLetters(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	for k, vs := range q {
		if (k != "from" && k != "limit") || len(vs) != 1 {
			writeAdminJSON(w, http.StatusBadRequest, &AdminError{Error: fmt.Sprintf("query parameter %.40q: want from and limit, each at most once", k)})
			return
		}
	}
	var from uint64
	if q.Has("from") {
		n, ok := parseSeq(q.Get("from"))
		if !ok {
			writeAdminJSON(w, http.StatusBadRequest, &AdminError{Error: fmt.Sprintf("from=%.40q: want a sequence number from 1", q.Get("from"))})
			return
		}
		from = n
	}
	limit := defaultDeadLettersListed
	if q.Has("limit") {
		n, ok := parseSeq(q.Get("limit"))
		if !ok || n > MaxDeadLettersListed {
			writeAdminJSON(w, http.StatusBadRequest, &AdminError{Error: fmt.Sprintf("limit=%.40q: want a number from 1 to %d", q.Get("limit"), MaxDeadLettersListed)})
			return
		}
		limit = int(n)
	}
	node, err := a.deadLetterNode(r.Context())
	if err != nil {
		writeDeadLetterError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	dls, err := msg.DeadLetters(ctx, node, from, limit)
	if err != nil {
		writeDeadLetterError(w, err)
		return
	}
	out := &DeadLetterList{DeadLetters: make([]DeadLetterEntry, 0, len(dls))}
	for _, d := range dls {
		p := d.Payload[:min(len(d.Payload), maxDeadLetterPayload)]
		out.DeadLetters = append(out.DeadLetters, DeadLetterEntry{
			Seq: d.Seq, Consumer: d.Consumer, Topic: d.Topic, Key: d.Key, ID: d.ID, Deliveries: d.Deliveries, Error: d.Error,
			Written: d.Written.UTC(), Time: d.Time.UTC(), PayloadSize: len(d.Payload),
			Payload: base64.StdEncoding.EncodeToString(p), PayloadTruncated: len(p) < len(d.Payload),
		})
	}
	if len(dls) == limit {
		out.Next = dls[len(dls)-1].Seq + 1
	}
	writeAdminJSON(w, http.StatusOK, out)
}

func (a *App) serveDeadLetterOp(w http.ResponseWriter, r *http.Request, who, op string) {
	if len(r.URL.RawQuery) > 0 {
		writeAdminJSON(w, http.StatusBadRequest, &AdminError{Error: op + " takes no query parameters"})
		return
	}
	raw := r.PathValue("seq")
	seq, ok := parseSeq(raw)
	if !ok && raw != "all" {
		writeAdminJSON(w, http.StatusBadRequest, &AdminError{Error: fmt.Sprintf("%.40q: want a dead letter's sequence number (from 1) or all", raw)})
		return
	}
	node, err := a.deadLetterNode(r.Context())
	if err != nil {
		writeDeadLetterError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	if raw == "all" {
		out, err := deadLetterAll(ctx, node, op)
		if err != nil {
			writeDeadLetterError(w, err)
			return
		}
		a.cfg.logger.Info("concord: dead letters "+op+"ed for an operator", "done", out.Done, "failed", out.Failed, "operator", who)
		code := http.StatusOK
		if out.Failed > 0 {
			code = http.StatusInternalServerError
			out.Error = fmt.Sprintf("%d dead letters not %sed (see errors)", out.Failed, op)
		}
		writeAdminJSON(w, code, out)
		return
	}
	if err := deadLetterOp(ctx, node, op, seq); err != nil {
		writeDeadLetterError(w, err)
		return
	}
	a.cfg.logger.Info("concord: dead letter "+op+"ed for an operator", "seq", seq, "operator", who)
	writeAdminJSON(w, http.StatusOK, &DeadLetterResult{Seq: seq, Done: 1})
}

// deadLetterOp replays or discards dead letter seq.
func deadLetterOp(ctx context.Context, node *coord.Node, op string, seq uint64) error {
	if op == "replay" {
		return msg.Replay(ctx, node, seq)
	}
	return msg.Discard(ctx, node, seq)
}

// deadLetterAll replays or discards the dead letters that were there when
// it started (a replayed message that fails again comes back at a later
// sequence, and is left for another call), oldest first, at most
// maxDeadLettersPerCall of them and while ctx lasts: when ctx ends first,
// More says to call again, and nothing is counted failed for it. One that
// fails (a malformed one cannot be replayed) is counted and the others go
// on. The error is non-nil only when the dead letters could not be read
// at all.
func deadLetterAll(ctx context.Context, node *coord.Node, op string) (*DeadLetterResult, error) {
	out := &DeadLetterResult{}
	fail := func(err error) {
		out.Failed++
		if len(out.Errors) < maxDeadLetterErrors {
			out.Errors = append(out.Errors, err.Error())
		}
	}
	stream, err := node.JetStream().Stream(ctx, coord.StreamDeadLetters)
	if err != nil {
		return nil, fmt.Errorf("msg: dead letters: %w", err)
	}
	last := stream.CachedInfo().State.LastSeq // the bound of this pass
	from := uint64(0)
	for seen := 0; seen < maxDeadLettersPerCall; {
		if ctx.Err() != nil {
			out.More = true
			return out, nil
		}
		page, err := msg.DeadLetters(ctx, node, from, min(msg.MaxListed, maxDeadLettersPerCall-seen))
		switch {
		case ctx.Err() != nil:
			out.More = true
			return out, nil
		case err != nil && seen == 0:
			return nil, err
		case err != nil:
			fail(err)
			return out, nil
		}
		for _, d := range page {
			if d.Seq > last {
				return out, nil
			}
			if ctx.Err() != nil {
				out.More = true
				return out, nil
			}
			seen++
			switch err := deadLetterOp(ctx, node, op, d.Seq); {
			case errors.Is(err, msg.ErrNotFound): // gone meanwhile, by another call
			case ctx.Err() != nil:
				out.More = true
				return out, nil
			case err != nil:
				fail(err)
			default:
				out.Done++
			}
		}
		if len(page) == 0 || page[len(page)-1].Seq >= last {
			return out, nil
		}
		from = page[len(page)-1].Seq + 1
	}
	out.More = true
	return out, nil
}

// parseSeq parses a positive decimal number strictly: digits only, no
// sign, no leading zero, no more than fit in a uint64.
func parseSeq(s string) (uint64, bool) {
	if len(s) == 0 || len(s) > 20 || s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// writeDeadLetterError answers err with its status code.
func writeDeadLetterError(w http.ResponseWriter, err error) {
	code := http.StatusServiceUnavailable
	msgText := err.Error()
	switch {
	case errors.Is(err, msg.ErrNotFound):
		code = http.StatusNotFound
		msgText += " (already replayed or discarded, or it never existed)"
	case errors.Is(err, msg.ErrInvalid):
		code = http.StatusConflict
		msgText += " (it cannot be replayed; discard it)"
	}
	writeAdminJSON(w, code, &AdminError{Error: msgText})
}
