package registry_test

import (
	"context"
	"errors"
	"testing"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/registry"
)

// TestReadStatusPartial: a status read whose parts cannot answer (here its
// context is already done) still returns the status, each unread part
// marked unknown with a reason, and fails only on a closed node.
func TestReadStatusPartial(t *testing.T) {
	n := openNode(t)
	res := resolver(t, n)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	st, err := registry.ReadStatus(ctx, n, res)
	if err != nil {
		t.Fatalf("ReadStatus with nothing answering: %v, want a partial status", err)
	}
	if st.Node == "" || st.ServicesUnknown == "" || len(st.Services) != 0 {
		t.Fatalf("services %+v, unknown %q", st.Services, st.ServicesUnknown)
	}
	if len(st.Buckets) != 8 {
		t.Fatalf("%d buckets, want 8 listed even when unread", len(st.Buckets))
	}
	for _, b := range st.Buckets {
		if b.Unknown == "" || b.Replicas != 0 {
			t.Fatalf("unread bucket %+v", b)
		}
	}
	_ = n.Close()
	if _, err := registry.ReadStatus(t.Context(), n, res); !errors.Is(err, coord.ErrClosed) {
		t.Fatalf("ReadStatus of a closed node: %v, want ErrClosed", err)
	}
}
