package config

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"
)

// FuzzDecodeEnvelope feeds arbitrary bytes to the decoder of stored
// versions (untrusted: anyone with access to the bucket or the local
// store can write them). It must never panic, and whatever it accepts
// must be within the limits and survive a round trip.
func FuzzDecodeEnvelope(f *testing.F) {
	good, _ := (&envelope{Type: "google.protobuf.StringValue", Value: []byte{10, 2, 'h', 'i'}, Writer: "alice", Time: time.Unix(1, 0).UTC(), Nonce: "n", Version: 7}).encode()
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"type":"a.B","value":"AAAA","writer":"x"}`))
	f.Add([]byte(`{"type":"..","value":null,"writer":"\u0000"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := decodeEnvelope(data)
		if err != nil {
			return
		}
		if len(env.Value) > MaxValueSize || checkWriter(env.Writer) != nil {
			t.Fatalf("accepted an envelope beyond the limits: %+v", env)
		}
		e := env.entry("fuzz", 1)
		_ = e.Unmarshal(&wrapperspb.StringValue{}) // may fail, must not panic
		again, err := env.encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeEnvelope(again)
		if err != nil {
			t.Fatalf("re-encoded envelope refused: %v", err)
		}
		if back.Type != env.Type || !bytes.Equal(back.Value, env.Value) || back.Writer != env.Writer || back.Version != env.Version {
			t.Fatalf("round trip changed %+v into %+v", env, back)
		}
	})
}
