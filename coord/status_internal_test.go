package coord

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TestPeerVerdicts pins the definitions of the peer states on one
// leader's view of a replica.
func TestPeerVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    peerReplica
		led  time.Duration
		want PeerState
	}{
		{"heard and caught up", peerReplica{active: 300 * time.Millisecond}, time.Minute, PeerCurrent},
		{"small lag under writes", peerReplica{active: 300 * time.Millisecond, lag: 12}, time.Minute, PeerCurrent},
		{"far behind", peerReplica{active: 300 * time.Millisecond, lag: 5000}, time.Minute, PeerCatchingUp},
		{"joining", peerReplica{active: 300 * time.Millisecond, pending: true}, time.Minute, PeerCatchingUp},
		{"silent", peerReplica{active: 6 * time.Second}, time.Minute, PeerOffline},
		{"server says offline", peerReplica{active: 300 * time.Millisecond, offline: true}, time.Minute, PeerOffline},
		{"not heard since a recent election", peerReplica{}, 2 * time.Second, PeerUnknown},
		{"not heard since an old election", peerReplica{}, time.Minute, PeerOffline},
		{"not heard, election time unknown", peerReplica{}, -1, PeerUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.name = "n2"
			name, got, reason := judge(tc.r, "the leader of S", tc.led)
			if name != "n2" || got != tc.want {
				t.Fatalf("judge = %s %s (%s), want %s", name, got, reason, tc.want)
			}
			if got != PeerCurrent && reason == "" {
				t.Fatalf("%s without a reason", got)
			}
		})
	}
}

// TestFollowerMetaView: on a meta follower, nats-server reports the other
// followers as not current with no timestamp (and, on a former leader,
// with a stale one); the status must judge only the leader from that view.
// It used to show every other follower as "catching up" forever.
func TestFollowerMetaView(t *testing.T) {
	v := &localView{self: "n1", clustered: true, meta: &server.MetaClusterInfo{
		Leader: "n3",
		Replicas: []*server.PeerInfo{
			{Name: "n2", Current: false, Active: 0},
			{Name: "n3", Current: true, Active: 400 * time.Millisecond},
			{Name: "n4", Current: false, Active: 40 * time.Second}, // stale: n1 led once
		},
	}}
	book := newPeerBook()
	book.judge("n1", PeerCurrent, "")
	leader, unknown := v.judgeMeta(book)
	if leader != "n3" || unknown != "" {
		t.Fatalf("meta leader %q (%s)", leader, unknown)
	}
	want := map[string]PeerState{"n1": PeerCurrent, "n2": PeerUnknown, "n3": PeerCurrent, "n4": PeerUnknown}
	for _, p := range book.list() {
		if p.State != want[p.Name] {
			t.Errorf("%s: %s (%s), want %s", p.Name, p.State, p.Reason, want[p.Name])
		}
	}
	// A stream leader's view settles n2; the most severe verdict wins.
	book.judge("n2", PeerCurrent, "")
	book.judge("n4", PeerCurrent, "")
	book.judge("n4", PeerCatchingUp, "500 entries behind the leader of S")
	book.judge("n4", PeerCurrent, "")
	if p := book.peers["n2"]; p.State != PeerCurrent {
		t.Errorf("n2: %s, want current", p.State)
	}
	if p := book.peers["n4"]; p.State != PeerCatchingUp || p.Reason == "" {
		t.Errorf("n4: %s (%s), want catching_up with a reason", p.State, p.Reason)
	}
}

// TestPeerLagIsTheLargestSeen: a peer's Lag is the most entries it was
// behind in any view, whatever the order of the views.
func TestPeerLagIsTheLargestSeen(t *testing.T) {
	book := newPeerBook()
	book.judgeReplica(peerReplica{name: "n2", active: 300 * time.Millisecond, lag: 40}, "the leader of A", time.Minute)
	book.judgeReplica(peerReplica{name: "n2", active: 300 * time.Millisecond, lag: 900}, "the leader of B", time.Minute)
	book.judgeReplica(peerReplica{name: "n2", active: 300 * time.Millisecond, lag: 7}, "the leader of C", time.Minute)
	book.judgeReplica(peerReplica{name: "n3", active: 300 * time.Millisecond}, "the leader of A", time.Minute)
	got := book.list()
	if len(got) != 2 || got[0].Lag != 900 || got[0].State != PeerCatchingUp || got[1].Lag != 0 || got[1].State != PeerCurrent {
		t.Fatalf("peers %+v, want n2 catching up 900 entries behind and n3 current", got)
	}
}
