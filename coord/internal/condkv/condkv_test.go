package condkv_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/internal/condkv"
	"github.com/concordrpc/concord/internal/nodetest"
)

// longMarkers is how long expiry markers live in a test that must read
// one whatever the machine's load (Concord's buckets keep them a second).
const longMarkers = time.Minute

// bucket opens a node and a bucket on it like Concord's TTL buckets, with
// the given history and expiry markers that live markerTTL.
func bucket(t *testing.T, history uint8, markerTTL time.Duration) (*condkv.Bucket, jetstream.KeyValue, *coord.Node) {
	t.Helper()
	node := nodetest.Open(t)
	ctx := nodetest.Within(t, 10*time.Second)
	kv, err := node.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: "condkv_test", History: history, Storage: jetstream.FileStorage, LimitMarkerTTL: markerTTL,
	})
	if err != nil {
		t.Fatal(err)
	}
	return condkv.New(node.JetStream(), node.Conn(), "condkv_test"), kv, node
}

func TestCheckKey(t *testing.T) {
	t.Parallel()
	for _, key := range []string{
		"a", "A.b-c/d_e=f", "k0123456789", "a.b.c",
		strings.Repeat("a", condkv.MaxKeyLen),
		strings.Repeat("ab.", condkv.MaxKeyLen/3-1) + "ab",
	} {
		if err := condkv.CheckKey(key); err != nil {
			t.Errorf("CheckKey(%.40q, %d bytes) = %v, want nil", key, len(key), err)
		}
	}
	for _, key := range []string{
		"",
		strings.Repeat("a", condkv.MaxKeyLen+1),
		strings.Repeat("a", 5000), // made nats-server close the connection (issue 11)
		".a", "a.", "a..b", ".",
		"a b", "a\tb", "a\r\nPUB x 1", "a\x00", "a*", "a.>", "*", ">", "é", "a+b", "a:b", "$KV",
	} {
		if err := condkv.CheckKey(key); !errors.Is(err, condkv.ErrBadKey) {
			t.Errorf("CheckKey(%.40q, %d bytes) = %v, want ErrBadKey", key, len(key), err)
		}
	}
}

func TestCheckPattern(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"a", "a.*", "a.>", "*", ">", "a.*.b", "*.*"} {
		if err := condkv.CheckPattern(p); err != nil {
			t.Errorf("CheckPattern(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range []string{"", "a>", "a*", "a.>.b", ">.a", "a..*", "a. *", strings.Repeat("a", condkv.MaxKeyLen+1)} {
		if err := condkv.CheckPattern(p); !errors.Is(err, condkv.ErrBadKey) {
			t.Errorf("CheckPattern(%.40q) = %v, want ErrBadKey", p, err)
		}
	}
}

// TestBadKeysNeverReachSubjects: every operation refuses a bad key before
// it publishes, so the stream stays empty and the connection open; a key
// of MaxKeyLen bytes is written and read back on a live connection.
func TestBadKeysNeverReachSubjects(t *testing.T) {
	t.Parallel()
	b, _, node := bucket(t, 1, time.Second)
	ctx := nodetest.Within(t, 10*time.Second)
	for _, key := range []string{strings.Repeat("a", condkv.MaxKeyLen+1), strings.Repeat("x", 1<<20), "a b", "a.>", "a\r\nPUB x 1"} {
		if _, err := b.Put(ctx, key, []byte("v"), nil, 0, 0); !errors.Is(err, condkv.ErrBadKey) {
			t.Errorf("Put of a %d-byte bad key: %v, want ErrBadKey", len(key), err)
		}
		if _, err := b.Purge(ctx, key, 0); !errors.Is(err, condkv.ErrBadKey) {
			t.Errorf("Purge of a %d-byte bad key: %v, want ErrBadKey", len(key), err)
		}
		if _, err := b.Last(ctx, key); !errors.Is(err, condkv.ErrBadKey) {
			t.Errorf("Last of a %d-byte bad key: %v, want ErrBadKey", len(key), err)
		}
	}
	if _, err := b.Watch(ctx, "a.>.b", condkv.WatchConfig{}, func(string, jetstream.Msg) {}); !errors.Is(err, condkv.ErrBadKey) {
		t.Errorf("Watch of a bad pattern: %v, want ErrBadKey", err)
	}
	s, err := node.JetStream().Stream(ctx, b.Stream())
	if err != nil {
		t.Fatal(err)
	}
	if last := s.CachedInfo().State.LastSeq; last != 0 {
		t.Fatalf("the stream has %d messages after bad keys, want none", last)
	}
	long := strings.Repeat("k", condkv.MaxKeyLen)
	seq, err := b.Put(ctx, long, []byte("v"), nil, 0, 0)
	if err != nil {
		t.Fatalf("Put of a %d-byte key: %v", len(long), err)
	}
	if e, err := b.Last(ctx, long); err != nil || !e.Live || e.Seq != seq || string(e.Data) != "v" {
		t.Fatalf("Last of a %d-byte key: %+v, %v", len(long), e, err)
	}
	if !node.Conn().IsConnected() {
		t.Fatal("the connection closed")
	}
}

// TestPutIsConditional: Put stores only when the key's last message has
// the expected sequence (0: none), and reports a lost race as a conflict;
// Last reads what it stored.
func TestPutIsConditional(t *testing.T) {
	t.Parallel()
	b, _, _ := bucket(t, 1, time.Second)
	ctx := nodetest.Within(t, 10*time.Second)
	e, err := b.Last(ctx, "k")
	if err != nil || e.Seq != 0 || e.Live {
		t.Fatalf("Last of a key never written: %+v, %v; want Seq 0, not live, no error", e, err)
	}
	h := nats.Header{}
	h.Set("X-Test", "one")
	s1, err := b.Put(ctx, "k", []byte("one"), h, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	e, err = b.Last(ctx, "k")
	if err != nil || !e.Live || e.Seq != s1 || string(e.Data) != "one" || e.Header.Get("X-Test") != "one" || e.Time.IsZero() || !e.Expires.IsZero() {
		t.Fatalf("Last after Put: %+v, %v", e, err)
	}
	for _, expect := range []uint64{0, s1 + 1, s1 - 1} {
		if _, err := b.Put(ctx, "k", []byte("stale"), nil, expect, 0); !coord.IsConflict(err) {
			t.Fatalf("Put expecting %d when the last is %d: %v, want a conflict", expect, s1, err)
		}
	}
	s2, err := b.Put(ctx, "k", []byte("two"), nil, s1, 5*time.Second)
	if err != nil || s2 <= s1 {
		t.Fatalf("Put expecting the last sequence: %d, %v", s2, err)
	}
	e, err = b.Last(ctx, "k")
	if err != nil || !e.Live || e.Seq != s2 || string(e.Data) != "two" {
		t.Fatalf("Last after the second Put: %+v, %v", e, err)
	}
	if d := e.Expires.Sub(e.Time); d != 5*time.Second {
		t.Fatalf("a Put with a 5s TTL expires %v after it was stored", d)
	}
}

// TestPurgeMarker: Purge is conditional, rolls the key's history up into
// one marker, which Last reports with its sequence (the KV API says "not
// found"), which writers must expect, and which vanishes after MarkerTTL
// without leaving another.
func TestPurgeMarker(t *testing.T) {
	t.Parallel()
	// History 5, to see the rollup; expiry markers of a second, as
	// Concord's buckets have: with a history above 1, the server raises
	// every message's TTL, the purge marker's included, to the expiry
	// markers' TTL.
	b, kv, node := bucket(t, 5, time.Second)
	ctx := nodetest.Within(t, 20*time.Second)
	var last uint64
	for i := range 3 {
		seq, err := b.Put(ctx, "k", fmt.Appendf(nil, "v%d", i), nil, last, 0)
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	if _, err := b.Purge(ctx, "k", last-1); !coord.IsConflict(err) {
		t.Fatalf("Purge expecting a stale sequence: %v, want a conflict", err)
	}
	marker, err := b.Purge(ctx, "k", last)
	if err != nil {
		t.Fatal(err)
	}
	s, err := node.JetStream().Stream(ctx, b.Stream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(b.Subject("k")))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[b.Subject("k")]; n != 1 {
		t.Fatalf("the key has %d messages after Purge, want its marker only", n)
	}
	e, err := b.Last(ctx, "k")
	if err != nil || e.Seq != marker || e.Live || e.Data != nil {
		t.Fatalf("Last after Purge: %+v, %v; want the marker's sequence %d, not live", e, err, marker)
	}
	if _, err := kv.Get(ctx, "k"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("kv.Get of a purged key: %v, want ErrKeyNotFound (the KV API hides the marker)", err)
	}
	if _, err := b.Put(ctx, "k", []byte("new"), nil, 0, 0); !coord.IsConflict(err) {
		t.Fatalf("Put expecting no message over a marker: %v, want a conflict", err)
	}
	// The marker vanishes after MarkerTTL; nothing replaces it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, err = b.Last(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if e.Seq == 0 {
			break
		}
		if e.Seq != marker || time.Now().After(deadline) {
			t.Fatalf("Last %+v, want the marker %d until it vanishes within 10s", e, marker)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := b.Put(ctx, "k", []byte("new"), nil, 0, 0); err != nil {
		t.Fatalf("Put expecting no message after the marker vanished: %v", err)
	}
}

// TestLastSeesExpiryMarker: a key whose TTL ran out leaves an expiry
// marker that kv.Get hides; Last returns it (Seq > 0, not live), and a
// writer expecting it succeeds where one expecting "no message" conflicts.
func TestLastSeesExpiryMarker(t *testing.T) {
	t.Parallel()
	b, kv, _ := bucket(t, 1, longMarkers) // the marker cannot vanish before Last reads it
	ctx := nodetest.Within(t, 20*time.Second)
	seq, err := b.Put(ctx, "k", []byte("v"), nil, 0, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var e condkv.Entry
	for i := 0; ; i++ {
		if e, err = b.Last(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if !e.Live {
			break
		}
		if i == 200 {
			t.Fatal("the key did not expire within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if e.Seq <= seq {
		t.Fatalf("Last of an expired key: %+v; want its marker (a sequence after %d), not \"no message\"", e, seq)
	}
	if _, err := kv.Get(ctx, "k"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("kv.Get of an expired key: %v, want ErrKeyNotFound", err)
	}
	if _, err := b.Put(ctx, "k", []byte("w"), nil, 0, 0); !coord.IsConflict(err) {
		t.Fatalf("Put expecting no message over an expiry marker: %v, want a conflict", err)
	}
	if _, err := b.Put(ctx, "k", []byte("w"), nil, e.Seq, 0); err != nil {
		t.Fatalf("Put expecting the expiry marker: %v", err)
	}
}

// TestLastAll: one batched read returns the live keys matching a pattern
// with their last messages, skips markers, and refuses more than
// MaxListed keys.
func TestLastAll(t *testing.T) {
	t.Parallel()
	b, _, _ := bucket(t, 1, time.Second)
	ctx := nodetest.Within(t, 60*time.Second)
	seqs := map[string]uint64{}
	for _, k := range []string{"a.1", "a.2", "a.3", "b.1", "a.4.x"} {
		seq, err := b.Put(ctx, k, []byte("v-"+k), nil, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		seqs[k] = seq
	}
	if _, err := b.Purge(ctx, "a.2", seqs["a.2"]); err != nil {
		t.Fatal(err)
	}
	list := func(pattern string) map[string]uint64 {
		t.Helper()
		got := map[string]uint64{}
		err := b.LastAll(ctx, pattern, func(key string, e condkv.Entry) {
			if !e.Live || string(e.Data) != "v-"+key {
				t.Errorf("LastAll(%q): %s %+v", pattern, key, e)
			}
			got[key] = e.Seq
		})
		if err != nil {
			t.Fatalf("LastAll(%q): %v", pattern, err)
		}
		return got
	}
	for pattern, want := range map[string][]string{
		"a.*": {"a.1", "a.3"},
		"a.>": {"a.1", "a.3", "a.4.x"},
		">":   {"a.1", "a.3", "a.4.x", "b.1"},
		"c.*": {},
	} {
		got := list(pattern)
		if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, want) {
			t.Errorf("LastAll(%q) = %v, want %v", pattern, keys, want)
		}
		for k, seq := range got {
			if seq != seqs[k] {
				t.Errorf("LastAll(%q): %s at %d, want %d", pattern, k, seq, seqs[k])
			}
		}
	}
	for i := range condkv.MaxListed + 1 {
		if _, err := b.Put(ctx, fmt.Sprintf("many.%d", i), []byte("v"), nil, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.LastAll(ctx, "many.*", func(string, condkv.Entry) {}); !errors.Is(err, condkv.ErrTooMany) {
		t.Fatalf("LastAll of %d keys: %v, want ErrTooMany", condkv.MaxListed+1, err)
	}
}

// TestRange: one batched read returns the live messages of matching keys
// from a sequence on, in stream order, within n messages (markers count
// and are skipped); it does not fail for many matching keys.
func TestRange(t *testing.T) {
	t.Parallel()
	b, _, _ := bucket(t, 1, time.Second)
	ctx := nodetest.Within(t, 20*time.Second)
	put := func(k string) uint64 {
		t.Helper()
		seq, err := b.Put(ctx, k, []byte(k), nil, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	put("x.1")
	x2 := put("x.2")
	put("y.1")
	x3 := put("x.3")
	if _, err := b.Purge(ctx, "x.2", x2); err != nil { // x.2's message is replaced by a marker
		t.Fatal(err)
	}
	put("x.4")
	rng := func(from uint64, n int) []string {
		t.Helper()
		var got []string
		var prev uint64
		err := b.Range(ctx, "x.*", from, n, func(key string, e condkv.Entry) {
			if !e.Live || string(e.Data) != key || e.Seq < from || e.Seq <= prev {
				t.Errorf("Range(%d, %d): %s %+v", from, n, key, e)
			}
			prev = e.Seq
			got = append(got, key)
		})
		if err != nil {
			t.Fatalf("Range(%d, %d): %v", from, n, err)
		}
		return got
	}
	for _, tc := range []struct {
		from uint64
		n    int
		want []string
	}{
		{0, 10, []string{"x.1", "x.3", "x.4"}},
		{0, 1, []string{"x.1"}},
		{x3, 10, []string{"x.3", "x.4"}},
		{x3, 2, []string{"x.3"}}, // the marker is the second message
		{x3 + 100, 10, nil},
	} {
		if got := rng(tc.from, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("Range(x.*, %d, %d) = %v, want %v", tc.from, tc.n, got, tc.want)
		}
	}
	if err := b.Range(ctx, "x.>.y", 0, 1, func(string, condkv.Entry) {}); !errors.Is(err, condkv.ErrBadKey) {
		t.Errorf("Range of a bad pattern: %v, want ErrBadKey", err)
	}
	for _, n := range []int{0, -1, condkv.MaxListed + 1} {
		if err := b.Range(ctx, "x.*", 0, n, func(string, condkv.Entry) {}); err == nil {
			t.Errorf("Range of %d messages: no error", n)
		}
	}
	for i := range condkv.MaxListed + 1 {
		put(fmt.Sprintf("many.%d", i))
	}
	n := 0
	if err := b.Range(ctx, "many.*", 0, condkv.MaxListed, func(string, condkv.Entry) { n++ }); err != nil || n != condkv.MaxListed {
		t.Fatalf("Range over %d keys: %d messages, %v; want %d", condkv.MaxListed+1, n, err, condkv.MaxListed)
	}
}

// TestNextAndWatchMore: a Watch with More patterns delivers the
// messages of every pattern, in stream order, through one consumer; Next
// finds the first message of a pattern from a sequence on, markers
// included; PurgeWith writes a marker with headers.
func TestNextAndWatchMore(t *testing.T) {
	t.Parallel()
	b, _, _ := bucket(t, 1, time.Second)
	ctx := nodetest.Within(t, 30*time.Second)
	type msg struct {
		key string
		seq uint64
	}
	got := make(chan msg, 16)
	w, err := b.Watch(ctx, "k", condkv.WatchConfig{HeadersOnly: true, More: []string{"q.k.*"}}, func(key string, m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			t.Error(err)
			return
		}
		got <- msg{key, md.Sequence.Stream}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var want []msg
	for _, k := range []string{"k", "q.k.1", "q.k.2", "q.k.2.x", "other"} {
		seq, err := b.Put(ctx, k, []byte("v"), nil, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if k != "q.k.2.x" && k != "other" {
			want = append(want, msg{k, seq})
		}
	}
	marker, err := b.Purge(ctx, "k", want[0].seq)
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, msg{"k", marker})
	for i, m := range want {
		select {
		case g := <-got:
			if g != m {
				t.Fatalf("watch message %d: %+v, want %+v", i, g, m)
			}
		case <-ctx.Done():
			t.Fatalf("watch message %d: none, want %+v", i, m)
		}
	}
	next := func(from uint64) (string, condkv.Entry) {
		t.Helper()
		k, e, err := b.Next(ctx, "q.k.*", from)
		if err != nil {
			t.Fatal(err)
		}
		return k, e
	}
	if k, e := next(0); k != "q.k.1" || !e.Live || e.Seq != want[1].seq {
		t.Errorf("Next(0) = %s %+v, want q.k.1 live at %d", k, e, want[1].seq)
	}
	if k, e := next(want[1].seq + 1); k != "q.k.2" || e.Seq != want[2].seq {
		t.Errorf("Next(%d) = %s %+v, want q.k.2 at %d", want[1].seq+1, k, e, want[2].seq)
	}
	if _, e := next(want[2].seq + 1); e.Seq != 0 {
		t.Errorf("Next past the last = %+v, want none", e)
	}
	if _, err := b.PurgeWith(ctx, "q.k.2", nats.Header{"X-Test": []string{"y"}}, want[2].seq); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-got:
		if g.key != "q.k.2" {
			t.Errorf("watch after PurgeWith: %+v", g)
		}
	case <-ctx.Done():
		t.Fatal("the watch did not deliver the purge marker")
	}
	if k, e := next(want[2].seq); k != "q.k.2" || e.Live || e.Seq <= want[2].seq {
		t.Errorf("Next after PurgeWith = %s %+v, want q.k.2's marker", k, e)
	}
}
