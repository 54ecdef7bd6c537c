package msg

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/concordrpc/concord/msg/internal/layout"
)

// Limits on what a message carries.
const (
	// MaxTopicLen bounds a topic, in bytes.
	MaxTopicLen = 128
	// MaxKeyLen bounds an ordering key, in bytes.
	MaxKeyLen = 256
	// MaxPayload bounds a payload, in bytes: half of the 1 MiB message
	// limit of Concord's NATS servers, leaving room for headers.
	MaxPayload = 512 << 10
	// MaxConsumerNameLen bounds a consumer name, in bytes.
	MaxConsumerNameLen = 64
	// Partitions is the number of ordered partitions of every topic. A
	// message with an ordering key goes to partition fnv1a32(key) mod
	// Partitions; changing it would move keys between partitions, so it
	// is fixed.
	Partitions = 16
)

// Subject layout on the CONCORD_MESSAGES and CONCORD_DEAD_LETTERS streams.
const (
	subjectPrefix = "concord.msg."
	dlqPrefix     = "concord.dlq."
	// unordered is the partition token of messages without a key.
	unordered = "u"
)

// Headers of a message on CONCORD_MESSAGES.
const (
	hdrMsgID = "Nats-Msg-Id"  // the publish's dedupe ID (JetStream)
	hdrID    = "Concord-Id"   // the message's ID: the inbox key
	hdrKey   = "Concord-Key"  // the ordering key in unpadded base64url, absent if none
	hdrTime  = "Concord-Time" // when the outbox row was written, RFC 3339
)

// Message is what a producer publishes through an Outbox.
type Message struct {
	// Topic names the kind of event, for example "orders.placed": see
	// CheckTopic. Required.
	Topic string
	// Key is the ordering key: messages of one topic with the same
	// non-empty key are handled in the order they were committed (see the
	// package doc). Empty means no order. Any valid UTF-8 without NUL
	// bytes, at most MaxKeyLen bytes (a string field of the event, as
	// it is): it travels base64-encoded.
	Key string
	// Payload is the message body, typically a marshalled protobuf
	// message; at most MaxPayload bytes.
	Payload []byte
}

// Delivery is a message as a consumer's handler receives it.
type Delivery struct {
	// ID is the message's ID, given by Outbox.Add: 32 lowercase hex
	// digits, the same on every delivery, replay and consumer.
	ID string
	// Topic and Key are the Message's.
	Topic, Key string
	// Payload is the Message's payload.
	Payload []byte
	// Deliveries counts the deliveries of this message to this consumer,
	// this one included (1 on the first).
	Deliveries int
	// Written is when the outbox row was written, by the producer's clock;
	// zero if unknown.
	Written time.Time
	// Sequence is the message's sequence in the CONCORD_MESSAGES stream.
	Sequence uint64
}

// CheckTopic reports whether topic is valid: 1 to MaxTopicLen bytes of
// dot-separated tokens, each one or more of [a-z0-9_-]. A topic becomes
// part of NATS subjects and consumer names, so nothing else is accepted.
// The error wraps ErrInvalid.
func CheckTopic(topic string) error {
	if topic == "" || len(topic) > MaxTopicLen {
		return fmt.Errorf("%w: topic of %d bytes, want 1 to %d", ErrInvalid, len(topic), MaxTopicLen)
	}
	for tok := range strings.SplitSeq(topic, ".") {
		if tok == "" {
			return fmt.Errorf("%w: topic %q has an empty token", ErrInvalid, topic)
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; !isLowerAlnum(c) && c != '_' && c != '-' {
				return fmt.Errorf("%w: topic %q: byte %q is not one of [a-z0-9_-.]", ErrInvalid, topic, c)
			}
		}
	}
	return nil
}

// CheckConsumerName reports whether name is a valid consumer name: 1 to
// MaxConsumerNameLen bytes of [a-z0-9-], starting with a letter or digit.
// The error wraps ErrInvalid.
func CheckConsumerName(name string) error {
	if name == "" || len(name) > MaxConsumerNameLen {
		return fmt.Errorf("%w: consumer name of %d bytes, want 1 to %d", ErrInvalid, len(name), MaxConsumerNameLen)
	}
	if name[0] == '-' {
		return fmt.Errorf("%w: consumer name %q starts with '-'", ErrInvalid, name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isLowerAlnum(c) && c != '-' {
			return fmt.Errorf("%w: consumer name %q: byte %q is not one of [a-z0-9-]", ErrInvalid, name, c)
		}
	}
	return nil
}

// checkKey reports whether key is a valid ordering key (see Message.Key).
func checkKey(key string) error {
	switch {
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: key of %d bytes exceeds %d", ErrInvalid, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: key is not valid UTF-8", ErrInvalid)
	case strings.IndexByte(key, 0) >= 0:
		return fmt.Errorf("%w: key holds a NUL byte", ErrInvalid)
	}
	return nil
}

func (m Message) check() error {
	if err := CheckTopic(m.Topic); err != nil {
		return err
	}
	if err := checkKey(m.Key); err != nil {
		return err
	}
	if len(m.Payload) > MaxPayload {
		return fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrInvalid, len(m.Payload), MaxPayload)
	}
	return nil
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// partition returns the partition token of a key: "u" for no key,
// otherwise the decimal partition number.
func partition(key string) string {
	if key == "" {
		return unordered
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return strconv.Itoa(int(h.Sum32() % Partitions))
}

// partitions returns every partition token: the ordered ones, then "u".
func partitions() []string {
	p := make([]string, 0, Partitions+1)
	for i := range Partitions {
		p = append(p, strconv.Itoa(i))
	}
	return append(p, unordered)
}

// subject returns the subject of a message of topic with key.
func subject(topic, key string) string { return subjectPrefix + topic + "." + partition(key) }

// dlqSubject returns the subject of a dead letter of consumer on topic.
func dlqSubject(consumer, topic string) string { return dlqPrefix + consumer + "." + topic }

// durableName returns the name of the JetStream consumer that serves
// consumer's handlers for one partition of topic (see layout.DurableName).
func durableName(consumer, topic, part string) string {
	return layout.DurableName(consumer, topic, part)
}

// newID returns a new message ID: 128 random bits in lowercase hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// checkID reports whether id is a message ID as newID makes them.
func checkID(id string) error {
	if len(id) != 32 {
		return fmt.Errorf("%w: message ID of %d bytes, want 32", ErrInvalid, len(id))
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("%w: message ID %q is not lowercase hex", ErrInvalid, id)
		}
	}
	return nil
}
