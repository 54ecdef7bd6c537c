package coord_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/concordrpc/concord/coord"
)

// TestStatusOfLoneNode reads a lone embedded node's status over HTTP: it
// leads itself, is current, and every bucket is read, with nothing
// unknown; once closed it answers 503 and Status returns ErrClosed.
func TestStatusOfLoneNode(t *testing.T) {
	n := openEmbedded(t, t.TempDir(), coord.WithName("solo"))
	defer n.Close()
	// One message in the locks bucket, so that its size shows.
	kv, err := n.JetStream().KeyValue(t.Context(), coord.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "status-test", []byte("x")); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(n)
	defer srv.Close()
	read := func() (*coord.Status, int) {
		t.Helper()
		res, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var st coord.Status
		if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return &st, res.StatusCode
	}
	st, code := read()
	if code != http.StatusOK || st.Mode != "embedded" || st.MetaLeader != "solo" || st.MetaLeaderUnknown != "" {
		t.Fatalf("%d %s", code, dump(st))
	}
	if len(st.Peers) != 1 || st.Peers[0] != (coord.PeerStatus{Name: "solo", State: coord.PeerCurrent}) {
		t.Fatalf("peers %+v", st.Peers)
	}
	if len(st.Buckets) != 8 || !complete(st) {
		t.Fatalf("buckets: %s", dump(st))
	}
	for _, b := range st.Buckets {
		if b.Replicas != 1 || b.Leader != "solo" || (b.Messages == 0) != (b.Bytes == 0) {
			t.Fatalf("%+v", b)
		}
		if b.Name == "KV_"+coord.BucketLocks && (b.Messages != 1 || b.Bytes == 0) {
			t.Fatalf("locks bucket after one put: %+v", b)
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, code := read(); code != http.StatusServiceUnavailable {
		t.Fatalf("closed node answered %d, want 503", code)
	}
	if _, err := n.Status(t.Context()); !errors.Is(err, coord.ErrClosed) {
		t.Fatalf("Status of a closed node: %v", err)
	}
}
