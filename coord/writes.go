package coord

import (
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// IsConflict reports a conditional write (a publish with an expected last
// sequence) refused because the subject's last sequence differed: a
// definite "not written".
func IsConflict(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// IsRefused reports an error after which a write is known not to have been
// stored: an API error from the stream, or nobody listening. Every other
// error (a timeout, a lost connection) leaves the outcome unclear, and the
// writer must read back to learn it.
func IsRefused(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) || errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}
