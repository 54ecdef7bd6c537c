package msg

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Headers of a dead letter on CONCORD_DEAD_LETTERS, beside hdrID, hdrKey
// and hdrTime.
const (
	hdrTopic      = "Concord-Topic"
	hdrConsumer   = "Concord-Consumer"
	hdrError      = "Concord-Error"
	hdrDeliveries = "Concord-Deliveries"
	hdrSourceSeq  = "Concord-Source-Seq"
)

// maxErrorLen bounds the error text a dead letter carries, in bytes.
const maxErrorLen = 1024

// envelope is a message's identity and routing, as carried in headers.
type envelope struct {
	ID, Topic, Key string
	Written        time.Time
	trace          map[string]string // trace context headers to send; never decoded
}

// newMsg returns the NATS message of an outbox row, with dedupeID as its
// JetStream message ID.
func (e envelope) newMsg(payload []byte, dedupeID string) *nats.Msg {
	m := nats.NewMsg(subject(e.Topic, e.Key))
	m.Data = payload
	m.Header.Set(hdrMsgID, dedupeID)
	m.Header.Set(hdrID, e.ID)
	if e.Key != "" {
		m.Header.Set(hdrKey, base64.RawURLEncoding.EncodeToString([]byte(e.Key)))
	}
	if !e.Written.IsZero() {
		m.Header.Set(hdrTime, e.Written.UTC().Format(time.RFC3339Nano))
	}
	setTraceHeaders(m.Header, e.trace)
	return m
}

// single returns the one value of header k: "" when absent, an error when
// repeated.
func single(h nats.Header, k string) (string, error) {
	switch v := h.Values(k); len(v) {
	case 0:
		return "", nil
	case 1:
		return v[0], nil
	}
	return "", fmt.Errorf("%w: header %s repeated", ErrInvalid, k)
}

// decodeEnvelope reads and checks the identity headers of a message: a
// valid ID, a valid optional key, an optional time. Anything may arrive
// on a subject, so nothing is trusted.
func decodeEnvelope(h nats.Header) (envelope, error) {
	var e envelope
	var err error
	if e.ID, err = single(h, hdrID); err != nil {
		return envelope{}, err
	}
	if err := checkID(e.ID); err != nil {
		return envelope{}, err
	}
	k, err := single(h, hdrKey)
	if err != nil {
		return envelope{}, err
	}
	key, err := base64.RawURLEncoding.Strict().DecodeString(k)
	if err != nil {
		return envelope{}, fmt.Errorf("%w: header %s is not unpadded base64url", ErrInvalid, hdrKey)
	}
	if e.Key = string(key); k != "" && e.Key == "" {
		return envelope{}, fmt.Errorf("%w: header %s is empty", ErrInvalid, hdrKey)
	}
	if err := checkKey(e.Key); err != nil {
		return envelope{}, err
	}
	ts, err := single(h, hdrTime)
	if err != nil {
		return envelope{}, err
	}
	if ts != "" {
		if e.Written, err = time.Parse(time.RFC3339Nano, ts); err != nil {
			return envelope{}, fmt.Errorf("%w: header %s: %v", ErrInvalid, hdrTime, err)
		}
	}
	return e, nil
}

// decodeDelivery checks a message received on subject with headers h: the
// subject is concord.msg.<topic>.<partition> with a valid topic, the
// headers decode, and the partition is the key's.
func decodeDelivery(subj string, h nats.Header) (envelope, error) {
	rest, ok := strings.CutPrefix(subj, subjectPrefix)
	i := strings.LastIndexByte(rest, '.')
	if !ok || i < 0 {
		return envelope{}, fmt.Errorf("%w: subject %q is not %s<topic>.<partition>", ErrInvalid, subj, subjectPrefix)
	}
	topic, part := rest[:i], rest[i+1:]
	if err := CheckTopic(topic); err != nil {
		return envelope{}, err
	}
	e, err := decodeEnvelope(h)
	if err != nil {
		return envelope{}, err
	}
	if want := partition(e.Key); part != want {
		return envelope{}, fmt.Errorf("%w: subject %q: partition %q, want %q for the key", ErrInvalid, subj, part, want)
	}
	e.Topic = topic
	return e, nil
}

// DeadLetter is a message that a consumer gave up on, as stored in the
// CONCORD_DEAD_LETTERS stream.
type DeadLetter struct {
	// Seq is the dead letter's sequence in CONCORD_DEAD_LETTERS: what
	// Replay and Discard take.
	Seq uint64
	// ID, Topic, Key and Payload are the message's.
	ID, Topic, Key string
	Payload        []byte
	// Consumer is the name of the consumer that gave up.
	Consumer string
	// Error is why: the handler's last error (cut to 1024 bytes), or the
	// reason the message could not be handled at all.
	Error string
	// Deliveries is how many times the consumer received the message.
	Deliveries int
	// Written is when the outbox row was written; zero if unknown.
	Written time.Time
	// Time is when the dead letter was stored.
	Time time.Time
}

// deadLetterMsg returns the dead letter of e (payload data) for consumer,
// which received it deliveries times, as message seq of CONCORD_MESSAGES.
// A message whose envelope did not decode keeps what did.
func deadLetterMsg(e envelope, data []byte, consumer string, deliveries int, seq uint64, reason string) *nats.Msg {
	topic := e.Topic
	if topic == "" {
		topic = "invalid"
	}
	m := nats.NewMsg(dlqSubject(consumer, topic))
	m.Data = data
	// The same message dead-lettered again by a consumer that crashed
	// before terminating it is dropped by the duplicate window.
	m.Header.Set(hdrMsgID, "dlq."+consumer+"."+strconv.FormatUint(seq, 10))
	if e.ID != "" {
		m.Header.Set(hdrID, e.ID)
	}
	if e.Key != "" {
		m.Header.Set(hdrKey, base64.RawURLEncoding.EncodeToString([]byte(e.Key)))
	}
	if !e.Written.IsZero() {
		m.Header.Set(hdrTime, e.Written.UTC().Format(time.RFC3339Nano))
	}
	m.Header.Set(hdrTopic, e.Topic)
	m.Header.Set(hdrConsumer, consumer)
	m.Header.Set(hdrDeliveries, strconv.Itoa(deliveries))
	m.Header.Set(hdrSourceSeq, strconv.FormatUint(seq, 10))
	m.Header.Set(hdrError, headerText(reason, maxErrorLen))
	return m
}

// headerText makes s safe as a header value: valid UTF-8, no control
// characters (a CR or LF would end the header), at most n bytes.
func headerText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && s[i]&0xC0 == 0x80 { // not a rune start
		i--
	}
	return s[:i]
}

// decodeDeadLetter checks a message read from CONCORD_DEAD_LETTERS. Only
// dead letters of well-formed messages (a valid ID and topic) can be
// replayed; others decode with ErrInvalid.
func decodeDeadLetter(seq uint64, subj string, h nats.Header, data []byte, at time.Time) (DeadLetter, error) {
	d := DeadLetter{Seq: seq, Payload: data, Time: at}
	rest, ok := strings.CutPrefix(subj, dlqPrefix)
	if !ok {
		return d, fmt.Errorf("%w: subject %q is not a dead letter's", ErrInvalid, subj)
	}
	var err error
	if d.Consumer, err = single(h, hdrConsumer); err != nil {
		return d, err
	}
	if err := CheckConsumerName(d.Consumer); err != nil || !strings.HasPrefix(rest, d.Consumer+".") {
		return d, fmt.Errorf("%w: dead letter %d: consumer %q does not match subject %q", ErrInvalid, seq, d.Consumer, subj)
	}
	if d.Error, err = single(h, hdrError); err != nil {
		return d, err
	}
	n, err := single(h, hdrDeliveries)
	if err != nil {
		return d, err
	}
	if d.Deliveries, err = strconv.Atoi(n); err != nil || d.Deliveries < 0 {
		return d, fmt.Errorf("%w: dead letter %d: deliveries %q", ErrInvalid, seq, n)
	}
	if d.Topic, err = single(h, hdrTopic); err != nil {
		return d, err
	}
	if err := CheckTopic(d.Topic); err != nil {
		return d, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	e, err := decodeEnvelope(h)
	if err != nil {
		return d, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	d.ID, d.Key, d.Written = e.ID, e.Key, e.Written
	return d, nil
}
