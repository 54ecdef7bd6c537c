package msg

import (
	"errors"
	"fmt"
)

// Errors returned by the package. Each function's doc names the ones it
// returns; they are wrapped with %w, so test them with errors.Is.
var (
	// ErrInvalid is returned for a topic, consumer name, ordering key,
	// payload or message ID that breaks the rules of CheckTopic,
	// CheckConsumerName and Message, and for a dead letter too malformed
	// to replay. Nothing was written.
	ErrInvalid = errors.New("msg: invalid argument")
	// ErrClosed is returned by operations on a closed Subscription or
	// Relay.
	ErrClosed = errors.New("msg: closed")
	// ErrPermanent marks a handler error that no retry can fix (a payload
	// that does not decode): wrap it, or use Permanent, and the message
	// goes to the dead letters at once instead of after the configured
	// deliveries.
	ErrPermanent = errors.New("msg: permanent failure")
	// ErrNotFound is returned by Replay and Discard for a dead letter that
	// does not exist (already replayed or discarded).
	ErrNotFound = errors.New("msg: dead letter not found")
)

// Permanent wraps err so that it matches ErrPermanent: a handler that
// returns it sends its message to the dead letters without retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}
