package registry_test

import (
	"context"
	"errors"
	"testing"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/registry"
)

// TestReadStatusMessages: a status read includes the messaging part,
// read from the node: no consumers and no dead letters on a new node.
func TestReadStatusMessages(t *testing.T) {
	n := openNode(t)
	st, err := registry.ReadStatus(t.Context(), n, resolver(t, n))
	if err != nil {
		t.Fatal(err)
	}
	m := st.Messages
	if m == nil || m.ConsumersUnknown != "" || m.DeadLettersUnknown != "" || len(m.Consumers) != 0 || m.DeadLetters != 0 || len(m.Outboxes) != 0 {
		t.Fatalf("messages %+v", m)
	}
}

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
	if m := st.Messages; m == nil || m.ConsumersUnknown == "" || m.DeadLettersUnknown == "" {
		t.Fatalf("messages %+v, want both parts unknown", m)
	}
	_ = n.Close()
	if _, err := registry.ReadStatus(t.Context(), n, res); !errors.Is(err, coord.ErrClosed) {
		t.Fatalf("ReadStatus of a closed node: %v, want ErrClosed", err)
	}
}
