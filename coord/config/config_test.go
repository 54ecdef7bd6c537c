package config_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/config"
	"github.com/concordrpc/concord/internal/nodetest"
	v1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1"
)

// TestSetWatchInOrder: versions written in quick succession reach every
// watcher of every handle in version order, none skipped, and Get ends
// with the last one.
func TestSetWatchInOrder(t *testing.T) {
	node := nodetest.Open(t)
	ctx := nodetest.Within(t, 60*time.Second)
	s := config.NewStore(node)
	h := handle(t, config.FromNode(node), config.FromStore(openLocal(t, t.TempDir())), "greeting")
	waitLoaded(t, h)
	if got := h.Get().GetText(); got != "default" || h.Version() != 0 {
		t.Fatalf("before any version: %q@%d, want the default", got, h.Version())
	}

	const watchers, versions = 3, 60
	var wg sync.WaitGroup
	seen := make([][]string, watchers)
	for i := range watchers {
		ch := h.Watch(ctx)
		first := <-ch // the current value comes first
		if first.Version != 0 || first.Value.GetText() != "default" {
			t.Fatalf("watcher %d: first update %q@%d", i, first.Value.GetText(), first.Version)
		}
		wg.Go(func() {
			var last uint64
			for u := range ch {
				if u.Version <= last || u.Skipped {
					t.Errorf("watcher %d: version %d after %d (skipped %v)", i, u.Version, last, u.Skipped)
				}
				last = u.Version
				seen[i] = append(seen[i], u.Value.GetText())
				if len(seen[i]) == versions {
					return
				}
			}
		})
	}
	var want []string
	var version uint64
	for i := range versions {
		text := fmt.Sprintf("hello %d", i)
		v, err := s.Set(ctx, "greeting", &v1.EchoRequest{Text: text}, version, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if v <= version {
			t.Fatalf("version %d after %d", v, version)
		}
		version = v
		want = append(want, text)
	}
	wg.Wait()
	for i := range watchers {
		if strings.Join(seen[i], ",") != strings.Join(want, ",") {
			t.Fatalf("watcher %d saw %v, want %v", i, seen[i], want)
		}
	}
	await(t, 5*time.Second, "Get at the last version", func() bool { return h.Version() == version })
	if h.Get().GetText() != want[len(want)-1] {
		t.Fatalf("Get = %q", h.Get().GetText())
	}
	cur := h.Current()
	if cur.Writer != "alice" || cur.Time.IsZero() {
		t.Fatalf("current writer %q time %v", cur.Writer, cur.Time)
	}
}

// TestInvalidRefused: a value that breaks its protovalidate rules, or is
// of another type than the config's, is refused with ErrInvalid and
// changes nothing; so are bad names and writers.
func TestInvalidRefused(t *testing.T) {
	node := nodetest.Open(t)
	ctx := nodetest.Within(t, 30*time.Second)
	s := config.NewStore(node)
	h := handle(t, config.FromNode(node), nil, "echo")
	v1v, err := s.Set(ctx, "echo", &v1.EchoRequest{Text: "ok"}, 0, "alice")
	if err != nil {
		t.Fatal(err)
	}
	await(t, 5*time.Second, "the first version seen", func() bool { return h.Version() == v1v })

	_, err = s.Set(ctx, "echo", &v1.EchoRequest{Text: ""}, v1v, "bob")
	var verr *protovalidate.ValidationError
	if !errors.Is(err, config.ErrInvalid) || !errors.As(err, &verr) || !strings.Contains(err.Error(), "text") {
		t.Fatalf("empty text: %v, want ErrInvalid with the violation", err)
	}
	_, err = s.Set(ctx, "echo", &v1.SumRequest{N: 3}, v1v, "bob")
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "EchoRequest") {
		t.Fatalf("wrong type: %v, want ErrInvalid naming the config's type", err)
	}
	for _, bad := range []struct{ name, writer string }{
		{"", "bob"}, {"a b", "bob"}, {"a.*", "bob"}, {"a..b", "bob"}, {"$KV.x", "bob"}, {"echo", ""}, {"echo", "bob\n"},
	} {
		if _, err := s.Set(ctx, bad.name, &v1.EchoRequest{Text: "x"}, v1v, bad.writer); !errors.Is(err, config.ErrInvalid) {
			t.Fatalf("name %q writer %q: %v, want ErrInvalid", bad.name, bad.writer, err)
		}
	}
	if _, err := s.Set(ctx, "echo", nil, v1v, "bob"); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("nil value: %v", err)
	}
	got, err := s.Get(ctx, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != v1v {
		t.Fatalf("version %d after refused writes, want %d", got.Version, v1v)
	}
	if hist, err := s.History(ctx, "echo", 0); err != nil || len(hist) != 1 {
		t.Fatalf("history after refused writes: %d versions, %v", len(hist), err)
	}
	time.Sleep(100 * time.Millisecond) // a stray version would have arrived by now
	if h.Version() != v1v || h.Get().GetText() != "ok" {
		t.Fatalf("handle at %q@%d", h.Get().GetText(), h.Version())
	}
}

// TestConflictRefused: a write that names a version other than the
// current one is refused with ErrConflict naming the current version.
func TestConflictRefused(t *testing.T) {
	node := nodetest.Open(t)
	ctx := nodetest.Within(t, 30*time.Second)
	s := config.NewStore(node)
	first, err := s.Set(ctx, "limits", &v1.EchoRequest{Text: "a"}, 0, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, "limits", &v1.EchoRequest{Text: "b"}, 0, "bob"); !errors.Is(err, config.ErrConflict) ||
		!strings.Contains(err.Error(), fmt.Sprint(first)) {
		t.Fatalf("create over an existing config: %v", err)
	}
	second, err := s.Set(ctx, "limits", &v1.EchoRequest{Text: "c"}, first, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, "limits", &v1.EchoRequest{Text: "d"}, first, "bob"); !errors.Is(err, config.ErrConflict) ||
		!strings.Contains(err.Error(), fmt.Sprintf("version %d", second)) {
		t.Fatalf("stale write: %v", err)
	}
	// Two writers racing from the same version: exactly one wins.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { _, errs[i] = s.Set(ctx, "limits", &v1.EchoRequest{Text: fmt.Sprint("race", i)}, second, "w") })
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("race from one version: %v and %v, want exactly one winner", errs[0], errs[1])
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, config.ErrConflict) {
			t.Fatalf("loser: %v", err)
		}
	}
	if hist, _ := s.History(ctx, "limits", 0); len(hist) != 3 {
		t.Fatalf("%d versions, want 3", len(hist))
	}
}

// TestRollbackWritesNewVersion: rollback stores an earlier version's
// value as a new version, which watchers receive; history keeps every
// version newest first, with writers, bounded to HistoryDepth.
func TestRollbackWritesNewVersion(t *testing.T) {
	node := nodetest.Open(t)
	ctx := nodetest.Within(t, 30*time.Second)
	s := config.NewStore(node)
	h := handle(t, config.FromNode(node), nil, "tpl")
	waitLoaded(t, h)
	va, err := s.Set(ctx, "tpl", &v1.EchoRequest{Text: "a"}, 0, "alice")
	if err != nil {
		t.Fatal(err)
	}
	vb, err := s.Set(ctx, "tpl", &v1.EchoRequest{Text: "b"}, va, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rollback(ctx, "tpl", va, va, "carol"); !errors.Is(err, config.ErrConflict) {
		t.Fatalf("rollback from a stale version: %v", err)
	}
	if _, err := s.Rollback(ctx, "tpl", vb+100, vb, "carol"); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("rollback to a missing version: %v", err)
	}
	vc, err := s.Rollback(ctx, "tpl", va, vb, "carol")
	if err != nil {
		t.Fatal(err)
	}
	if vc <= vb {
		t.Fatalf("rollback version %d, not after %d", vc, vb)
	}
	await(t, 5*time.Second, "the handle at the rollback", func() bool { return h.Version() == vc })
	if h.Get().GetText() != "a" || h.Current().Writer != "carol" {
		t.Fatalf("after rollback: %q by %q", h.Get().GetText(), h.Current().Writer)
	}
	hist, err := s.History(ctx, "tpl", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range hist {
		m := &v1.EchoRequest{}
		if err := e.Unmarshal(m); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d:%s:%s", e.Version, m.GetText(), e.Writer))
	}
	want := []string{fmt.Sprintf("%d:a:carol", vc), fmt.Sprintf("%d:b:bob", vb), fmt.Sprintf("%d:a:alice", va)}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("history %v, want %v", got, want)
	}
	if !proto.Equal(mustGet(t, s, "tpl"), &v1.EchoRequest{Text: "a"}) {
		t.Fatal("stored value is not the rolled-back one")
	}
	// History is bounded: after many writes only the last HistoryDepth remain.
	v := vc
	for i := range 2 * config.HistoryDepth {
		if v, err = s.Set(ctx, "tpl", &v1.EchoRequest{Text: fmt.Sprint(i)}, v, "loop"); err != nil {
			t.Fatal(err)
		}
	}
	if hist, err := s.History(ctx, "tpl", 0); err != nil || len(hist) != config.HistoryDepth || hist[0].Version != v {
		t.Fatalf("history after many writes: %d versions, %v", len(hist), err)
	}
	kv, err := node.JetStream().KeyValue(ctx, coord.BucketConfig)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.History() != config.HistoryDepth {
		t.Fatalf("the bucket keeps %d versions, HistoryDepth says %d", st.History(), config.HistoryDepth)
	}
	if hist, err := s.History(ctx, "tpl", 2); err != nil || len(hist) != 2 {
		t.Fatalf("history limit 2: %d versions, %v", len(hist), err)
	}
	if _, err := s.Rollback(ctx, "tpl", va, v, "carol"); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("rollback past the kept history: %v", err)
	}
}

func mustGet(t *testing.T, s *config.Store, name string) *v1.EchoRequest {
	t.Helper()
	e, err := s.Get(nodetest.Within(t, 5*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	m := &v1.EchoRequest{}
	if err := e.Unmarshal(m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRestartWhileCoordinationDown: a handle that saw a value keeps it in
// the local store; after the node is gone, a new handle whose backend
// fails starts with that value, and Get never blocks.
func TestRestartWhileCoordinationDown(t *testing.T) {
	dir := t.TempDir()
	local := openLocal(t, dir)
	node := nodetest.Open(t)
	ctx := nodetest.Within(t, 30*time.Second)
	s := config.NewStore(node)
	h := config.New(config.FromNode(node), config.FromStore(local), "pricing", &v1.EchoRequest{Text: "default"})
	var want uint64
	for i := range 3 {
		v, err := s.Set(ctx, "pricing", &v1.EchoRequest{Text: fmt.Sprint("price ", i)}, want, "alice")
		if err != nil {
			t.Fatal(err)
		}
		want = v
	}
	await(t, 5*time.Second, "the handle at the last version", func() bool { return h.Version() == want })
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}

	down := config.New(downBackend{}, config.FromStore(local), "pricing", &v1.EchoRequest{Text: "default"})
	defer down.Close()
	waitLoaded(t, down)
	if down.Get().GetText() != "price 2" || down.Version() != want || down.Current().Writer != "alice" {
		t.Fatalf("after restart while down: %q@%d, want %q@%d", down.Get().GetText(), down.Version(), "price 2", want)
	}
	// Another name has no local copy: its default.
	other := config.New(downBackend{}, config.FromStore(local), "other", &v1.EchoRequest{Text: "default"})
	defer other.Close()
	if other.Get().GetText() != "default" || other.Version() != 0 {
		t.Fatalf("other: %q@%d", other.Get().GetText(), other.Version())
	}
}

// TestHandleBadArguments: a handle with a bad name serves its default and
// reports ErrInvalid; a closed handle reports ErrClosed and its watches
// end.
func TestHandleBadArguments(t *testing.T) {
	h := config.New(downBackend{}, nil, "no spaces", &v1.EchoRequest{Text: "d"})
	if err := h.Wait(t.Context()); !errors.Is(err, config.ErrInvalid) || h.Get().GetText() != "d" {
		t.Fatalf("bad name: %v, %q", err, h.Get().GetText())
	}
	_ = h.Close()
	h = config.New(downBackend{}, nil, "fine", &v1.EchoRequest{Text: "d"})
	ch := h.Watch(t.Context())
	<-ch
	_ = h.Close()
	_ = h.Close()
	if _, ok := <-ch; ok {
		t.Fatal("watch channel open after Close")
	}
	if err := h.Wait(t.Context()); !errors.Is(err, config.ErrClosed) {
		t.Fatalf("Wait after Close: %v", err)
	}
}
