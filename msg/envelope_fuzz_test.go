package msg

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// encodeHeader renders h as a NATS header block.
func encodeHeader(h nats.Header) []byte {
	var b bytes.Buffer
	b.WriteString("NATS/1.0\r\n")
	for k, vs := range h {
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// FuzzDecodeEnvelope feeds arbitrary subjects and header blocks to the
// decoders of incoming messages and dead letters: they never panic, and
// whatever they accept is valid and encodes back to the same subject and
// envelope.
func FuzzDecodeEnvelope(f *testing.F) {
	e := envelope{ID: newID(), Topic: "orders.placed", Key: "acct-1", Written: time.Unix(1, 2)}
	m := e.newMsg([]byte("p"), e.ID)
	f.Add(m.Subject, encodeHeader(m.Header))
	dl := deadLetterMsg(e, nil, "billing", 3, 7, "boom\r\nInjected: 1")
	f.Add(dl.Subject, encodeHeader(dl.Header))
	f.Add("concord.msg.a.u", []byte("NATS/1.0\r\nConcord-Id: 0123456789abcdef0123456789abcdef\r\n\r\n"))
	f.Add("concord.msg..u", []byte("NATS/1.0\r\nConcord-Id: x\r\nConcord-Id: y\r\n\r\n"))
	f.Add("concord.dlq.x.y", []byte("NATS/1.0 503\r\n\r\n"))
	f.Fuzz(func(t *testing.T, subj string, raw []byte) {
		h, err := nats.DecodeHeadersMsg(raw)
		if err != nil {
			return
		}
		if e, err := decodeDelivery(subj, h); err == nil {
			if CheckTopic(e.Topic) != nil || checkKey(e.Key) != nil || checkID(e.ID) != nil {
				t.Fatalf("accepted an invalid envelope %+v", e)
			}
			m := e.newMsg(nil, e.ID)
			if m.Subject != subj {
				t.Fatalf("subject %q re-encodes as %q", subj, m.Subject)
			}
			back, err := decodeDelivery(m.Subject, m.Header)
			if err != nil || back.ID != e.ID || back.Key != e.Key || back.Topic != e.Topic || !back.Written.Equal(e.Written) {
				t.Fatalf("round trip: %+v, %v; want %+v", back, err, e)
			}
		}
		if d, err := decodeDeadLetter(1, subj, h, nil, time.Time{}); err == nil {
			if CheckConsumerName(d.Consumer) != nil || CheckTopic(d.Topic) != nil || checkID(d.ID) != nil || d.Deliveries < 0 {
				t.Fatalf("accepted an invalid dead letter %+v", d)
			}
			if !strings.HasPrefix(subj, dlqPrefix+d.Consumer+".") {
				t.Fatalf("dead letter of %q on subject %q", d.Consumer, subj)
			}
		}
	})
}

// The error a dead letter carries cannot break out of its header.
func TestHeaderText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"a\r\nInjected: 1", "a  Injected: 1"},
		{"\xff", "\uFFFD"},
		{strings.Repeat("é", 600), strings.Repeat("é", 512)},
	} {
		if got := headerText(tc.in, maxErrorLen); got != tc.want {
			t.Errorf("headerText(%.20q) = %.20q, want %.20q", tc.in, got, tc.want)
		}
	}
	dl := deadLetterMsg(envelope{ID: newID(), Topic: "t"}, nil, "c", 1, 1, "x\r\nNats-Msg-Id: evil")
	h, err := nats.DecodeHeadersMsg(encodeHeader(dl.Header))
	if err != nil || len(h.Values(hdrMsgID)) != 1 || h.Get(hdrMsgID) != "dlq.c.1" {
		t.Errorf("header injection: %v %v", h, err)
	}
}
