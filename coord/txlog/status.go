package txlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// StatusFinished is how many recently finished transactions a status read
// lists.
const StatusFinished = 10

// Status is the transaction log's part of a status read (concord status).
// Records carry no request bytes.
type Status struct {
	// InFlight lists the unfinished transactions that are trying, or
	// decided and not yet retried.
	InFlight []*Record `json:"in_flight"`
	// Stuck lists the decided transactions whose Confirm or Cancel failed
	// at least once and is being retried: each branch's Error is its last
	// failure.
	Stuck []*Record `json:"stuck"`
	// Finished lists up to StatusFinished recently finished transactions,
	// newest first.
	Finished []*Record `json:"finished"`
	// Unknown is "" when the log was read, and otherwise says why not.
	Unknown string `json:"unknown,omitempty"`
}

// ReadStatus reads the log's status within timeout with three JetStream
// requests and no consumer: one batched direct read of the unfinished
// transactions, and one stream info and one batched direct read for the
// latest summaries (see List). A failure is reported in Unknown, never as
// an error.
func (l *Log) ReadStatus(ctx context.Context, timeout time.Duration) *Status {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st := &Status{InFlight: []*Record{}, Stuck: []*Record{}, Finished: []*Record{}}
	unfinished, finished, err := l.List(ctx, StatusFinished)
	if err != nil {
		st.Unknown = err.Error()
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			st.Unknown = fmt.Sprintf("no answer within %v", timeout)
		}
	}
	for _, r := range unfinished {
		for i := range r.Branches {
			r.Branches[i].Request = nil
		}
		if r.State.Decided() && r.Attempts > 0 {
			st.Stuck = append(st.Stuck, r)
		} else {
			st.InFlight = append(st.InFlight, r)
		}
	}
	if finished != nil {
		st.Finished = finished
	}
	return st
}
