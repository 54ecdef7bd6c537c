package msg

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/coord"
)

// MaxListed bounds how many dead letters one DeadLetters call returns.
const MaxListed = 1000

// DeadLetters returns up to limit (at most MaxListed) dead letters of
// node's CONCORD_DEAD_LETTERS stream with a sequence of at least from,
// oldest first; pass the last one's Seq+1 to read on. A dead letter too
// malformed to replay (written by something else than this package) is
// returned with what could be read and an empty Topic.
func DeadLetters(ctx context.Context, node *coord.Node, from uint64, limit int) ([]DeadLetter, error) {
	stream, err := node.JetStream().Stream(ctx, coord.StreamDeadLetters)
	if err != nil {
		return nil, fmt.Errorf("msg: dead letters: %w", err)
	}
	limit = min(max(limit, 0), MaxListed)
	var out []DeadLetter
	for seq := max(from, 1); len(out) < limit; {
		raw, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(dlqPrefix+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("msg: dead letters: %w", err)
		}
		d, err := decodeDeadLetter(raw.Sequence, raw.Subject, raw.Header, raw.Data, raw.Time)
		if err != nil {
			d.Topic, d.ID, d.Key = "", "", ""
		}
		out = append(out, d)
		seq = raw.Sequence + 1
	}
	return out, nil
}

// Replay publishes dead letter seq again to its topic, with its ID, key
// and payload, and then deletes it from the dead letters. Every consumer
// of the topic receives it again; those that handled it before skip it
// by their inbox (within the inbox retention), and the one that gave up
// handles it with a fresh delivery count. If Replay fails after the
// publish, the dead letter stays and a second Replay publishes it again,
// which the inboxes absorb the same way.
//
// Replay returns ErrNotFound for a missing dead letter, ErrInvalid for one
// too malformed to replay, and JetStream's error.
func Replay(ctx context.Context, node *coord.Node, seq uint64) error {
	js := node.JetStream()
	stream, err := js.Stream(ctx, coord.StreamDeadLetters)
	if err != nil {
		return fmt.Errorf("msg: replay %d: %w", seq, err)
	}
	if seq == 0 {
		return fmt.Errorf("msg: replay %d: %w", seq, ErrNotFound)
	}
	raw, err := stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("msg: replay %d: %w", seq, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("msg: replay %d: %w", seq, err)
	}
	d, err := decodeDeadLetter(raw.Sequence, raw.Subject, raw.Header, raw.Data, raw.Time)
	if err != nil {
		return fmt.Errorf("msg: replay %d: %w", seq, err)
	}
	e := envelope{ID: d.ID, Topic: d.Topic, Key: d.Key, Written: d.Written}
	// A dedupe ID of its own: the original's would be dropped if it was
	// published less than the duplicate window ago.
	m := e.newMsg(d.Payload, "replay."+strconv.FormatUint(seq, 10))
	if _, err := js.PublishMsg(ctx, m, jetstream.WithExpectStream(coord.StreamMessages)); err != nil {
		return fmt.Errorf("msg: replay %d: %w", seq, err)
	}
	return discard(ctx, stream, seq)
}

// Discard deletes dead letter seq without replaying it. It returns
// ErrNotFound for a missing dead letter, and JetStream's error.
func Discard(ctx context.Context, node *coord.Node, seq uint64) error {
	if seq == 0 {
		return fmt.Errorf("msg: discard %d: %w", seq, ErrNotFound)
	}
	stream, err := node.JetStream().Stream(ctx, coord.StreamDeadLetters)
	if err != nil {
		return fmt.Errorf("msg: discard %d: %w", seq, err)
	}
	if err := stream.DeleteMsg(ctx, seq); err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
			return fmt.Errorf("msg: discard %d: %w", seq, ErrNotFound)
		}
		return fmt.Errorf("msg: discard %d: %w", seq, err)
	}
	return nil
}

func discard(ctx context.Context, stream jetstream.Stream, seq uint64) error {
	if err := stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("msg: replay %d: published, but deleting the dead letter failed: %w", seq, err)
	}
	return nil
}
