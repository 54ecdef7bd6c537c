package coord

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// statusPartTimeout bounds each part of a status read: each stream's info
// and this node's own view of the cluster. The parts run concurrently, so
// a read answers within about this long even while a leader is being
// elected (which takes nats-server 4 to 9 seconds).
const statusPartTimeout = time.Second

// peerSilence is how long a Raft group leader may go without hearing from
// a peer before the peer counts as offline. Leaders send a heartbeat every
// second when idle and every live peer answers each one.
const peerSilence = 5 * time.Second

// currentLag is the lag, in Raft entries behind a group leader, from which
// a replica counts as catching up: under writes, a healthy replica is
// always a few entries behind, and nats-server calls it current only at 0.
const currentLag = 100

// Status is one node's snapshot of the coordination backend. Each part is
// read with its own short time bound, concurrently, so a status read
// answers within about a second even during a leader election or with a
// node down; a part that did not answer is reported as unknown, with the
// reason, in the field named for it (MetaLeaderUnknown,
// BucketStatus.Unknown, PeerStatus.Reason), rather than failing the read.
type Status struct {
	// Mode is "embedded", "cluster" or "client".
	Mode string `json:"mode"`
	// Node is this node's name.
	Node string `json:"node"`
	// MetaLeader is the JetStream meta leader, or "" when it is not known;
	// then MetaLeaderUnknown says why.
	MetaLeader string `json:"meta_leader,omitempty"`
	// MetaLeaderUnknown is "" when MetaLeader is known. Otherwise it says
	// why not: a client-mode node cannot see the meta group; no meta
	// leader is elected (an election is in progress); the last leader
	// this node knows of is offline; or this node's own cluster state did
	// not answer in time.
	MetaLeaderUnknown string `json:"meta_leader_unknown,omitempty"`
	// Peers lists the JetStream servers this read learned of, sorted by
	// name: an embedded node's meta group (itself included), and the
	// servers that host or lead Concord's streams. A client-mode node
	// knows only the latter, so a server whose streams did not answer may
	// be missing.
	Peers []PeerStatus `json:"peers,omitempty"`
	// Buckets lists Concord's buckets and streams, each read or unknown.
	Buckets []BucketStatus `json:"buckets"`
}

// PeerState is a JetStream server's state as a Status read judges it.
type PeerState string

// The peer states. A Status read gathers every view it has of a peer: the
// view of each stream leader that answered (a stream info is answered by
// the stream's leader, which tracks every replica), this node's meta view
// when it is the meta leader, its view of the meta leader when it is a
// follower, and, on a clustered embedded node, whether it has a route to
// the peer. A follower's meta view of the other followers is never used:
// nats-server tracks only the leader there and reports every other
// follower as not current. The most severe verdict wins, in the order
// offline, catching up, current, unknown.
const (
	// PeerCurrent: a leader heard from the peer within peerSilence (5s) and
	// it is fewer than currentLag (100) Raft entries behind, or the peer
	// leads a group, or it is this node.
	PeerCurrent PeerState = "current"
	// PeerCatchingUp: the peer answers its leader but is currentLag (100)
	// or more entries behind, or it is joining a group.
	PeerCatchingUp PeerState = "catching_up"
	// PeerOffline: nats-server reports the peer offline (it announced its
	// shutdown, or has been silent for minutes); or a leader has not heard
	// from it for more than peerSilence (5s), or not since it was elected
	// more than 5s ago; or this clustered embedded node has no route to it
	// (the servers of a cluster route to each other directly, and a dead
	// server's routes close at once).
	PeerOffline PeerState = "offline"
	// PeerUnknown: no view judged the peer, for example another follower of
	// the meta group that no answering stream leader reports on.
	PeerUnknown PeerState = "unknown"
)

// severity orders the verdicts on a peer; the highest wins.
func (s PeerState) severity() int {
	return slices.Index([]PeerState{PeerUnknown, PeerCurrent, PeerCatchingUp, PeerOffline}, s)
}

// PeerStatus describes one JetStream server.
type PeerStatus struct {
	// Name is the server's name.
	Name string `json:"name"`
	// State is the server's state (see PeerState).
	State PeerState `json:"state"`
	// Reason says which view decided State, for every state but current
	// (for example "no route from this node" or "52 entries behind the
	// leader of CONCORD_TXLOG").
	Reason string `json:"reason,omitempty"`
	// Lag is the most Raft entries the peer was behind a group's leader
	// in any view this read had (the meta group's, each stream's); 0 when
	// no view reported it behind.
	Lag uint64 `json:"lag,omitempty"`
}

// BucketStatus describes one bucket or stream.
type BucketStatus struct {
	// Name is the stream name (KV_ and the bucket name for a bucket).
	Name string `json:"name"`
	// Kind is "kv" or "stream".
	Kind string `json:"kind"`
	// Replicas is the configured replica count; 0 when the info was not
	// read.
	Replicas int `json:"replicas"`
	// Leader is the server leading the stream's Raft group (the server
	// itself for a node without clustering); "" when not known.
	Leader string `json:"leader,omitempty"`
	// Messages is the number of stored messages.
	Messages uint64 `json:"messages"`
	// Bytes is the size of the stored messages, as the stream counts it
	// (headers and subjects included), on one replica.
	Bytes uint64 `json:"bytes"`
	// Unknown is "" when every field above is known. Otherwise it says
	// why not, in one of two cases: the stream's info was not read (no
	// answer within the time bound, as while its leader is down and a new
	// one not yet elected, or an error), and Replicas, Leader, Messages
	// and Bytes are zero; or a replica answered while no leader is elected, and only
	// Leader is empty.
	Unknown string `json:"unknown,omitempty"`
}

// Status reports the node's view of the backend. It reads each stream's
// info (one JetStream request each) and, on an embedded node, its own
// meta and route state, all concurrently and each bounded by one second
// (less if ctx ends sooner). A part that does not answer in time is
// reported as unknown in the returned Status, not as an error: the only
// error is ErrClosed, on a closed Node. It creates no consumer.
func (n *Node) Status(ctx context.Context) (*Status, error) {
	if n.nc == nil || n.nc.IsClosed() {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, statusPartTimeout)
	defer cancel()
	st := &Status{Mode: n.cfg.mode.String(), Node: n.cfg.name}
	for _, b := range buckets(n.replicas) {
		st.Buckets = append(st.Buckets, BucketStatus{Name: "KV_" + b.Bucket, Kind: "kv"})
	}
	for _, s := range streams(n.replicas) {
		st.Buckets = append(st.Buckets, BucketStatus{Name: s.Name, Kind: "stream"})
	}
	infos := make([]*jetstream.StreamInfo, len(st.Buckets))
	var wg sync.WaitGroup
	for i := range st.Buckets {
		b := &st.Buckets[i]
		wg.Go(func() {
			s, err := n.js.Stream(ctx, b.Name)
			if err != nil {
				b.Unknown = unknownReason(err)
				return
			}
			infos[i] = s.CachedInfo() // fetched by Stream: one request
		})
	}
	var local *localView
	var localErr error
	if n.srv != nil {
		local, localErr = n.readLocal(ctx)
	}
	wg.Wait()

	book := newPeerBook()
	switch {
	case n.srv == nil:
		st.MetaLeaderUnknown = "a client-mode node cannot see the meta group"
	case localErr != nil:
		st.MetaLeaderUnknown = fmt.Sprintf("this node's own cluster state was not read within %v: %v", statusPartTimeout, localErr)
	case !local.clustered:
		st.MetaLeader = local.self // a lone node leads itself
		book.judge(local.self, PeerCurrent, "")
	default:
		book.judge(local.self, PeerCurrent, "")
		st.MetaLeader, st.MetaLeaderUnknown = local.judgeMeta(book)
	}
	for i, info := range infos {
		if info != nil {
			judgeStream(&st.Buckets[i], info, book)
		}
	}
	if local != nil && local.routed != nil {
		for name := range book.peers {
			if name != local.self && !local.routed[name] {
				book.judge(name, PeerOffline, "no route from this node")
			}
		}
	}
	st.Peers = book.list()
	if p := book.peers[st.MetaLeader]; p != nil && p.State == PeerOffline {
		st.MetaLeaderUnknown = fmt.Sprintf("the last known meta leader, %s, is offline (%s): an election is due", p.Name, p.Reason)
		st.MetaLeader = ""
	}
	return st, nil
}

// unknownReason says why a part of a status read is unknown.
func unknownReason(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		return fmt.Sprintf("no answer within %v (its leader may be down, or being elected)", statusPartTimeout)
	}
	return err.Error()
}

// localView is an embedded node's own view of its cluster.
type localView struct {
	self      string
	clustered bool
	meta      *server.MetaClusterInfo // nil when not clustered or not ready
	routed    map[string]bool         // servers with a route to this one; nil if unread
}

// readLocal reads the embedded server's meta and route state. The server
// answers from memory, but under its locks, so the read is bounded by ctx
// like any other part: a late answer is dropped.
func (n *Node) readLocal(ctx context.Context) (*localView, error) {
	ch := make(chan *localView, 1)
	go func() {
		v := &localView{self: n.srv.Name(), clustered: n.srv.JetStreamIsClustered()}
		if v.clustered {
			if jsz, err := n.srv.Jsz(nil); err == nil {
				v.meta = jsz.Meta
			}
			if rz, err := n.srv.Routez(nil); err == nil {
				v.routed = map[string]bool{}
				for _, r := range rz.Routes {
					v.routed[r.RemoteName] = true
				}
			}
		}
		ch <- v
	}()
	select {
	case v := <-ch:
		return v, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// judgeMeta records the meta group's views in book and returns the meta
// leader, or "" and why it is not known. Only a leader's view of its
// followers, and a follower's view of its leader, say anything:
// nats-server reports a follower's other followers as not current,
// whatever their state.
func (v *localView) judgeMeta(book *peerBook) (leader, unknown string) {
	if v.meta == nil {
		return "", "this node has no meta group state: JetStream is not ready"
	}
	leader = v.meta.Leader
	for _, p := range v.meta.Replicas {
		if p.Name == v.self {
			continue // listed while there is no leader
		}
		book.add(p.Name)
		switch {
		case leader == v.self:
			book.judgeReplica(replica(*p), "the meta leader (this node)", -1)
		case p.Name == leader:
			book.judgeReplica(replica(*p), "this node", -1)
		}
	}
	if leader == "" {
		return "", "no meta leader: an election is in progress"
	}
	return leader, ""
}

// judgeStream fills b from info and records the stream leader's view of
// its replicas in book. A stream's info is answered by its leader, or,
// while it has none, by any replica, whose view of the others is ignored.
func judgeStream(b *BucketStatus, info *jetstream.StreamInfo, book *peerBook) {
	b.Replicas, b.Messages, b.Bytes = info.Config.Replicas, info.State.Msgs, info.State.Bytes
	ci := info.Cluster
	if ci == nil {
		return
	}
	b.Leader = ci.Leader
	if ci.Leader == "" {
		b.Unknown = "no leader: an election is in progress (a replica answered)"
		for _, p := range ci.Replicas {
			book.add(p.Name)
		}
		return
	}
	book.judge(ci.Leader, PeerCurrent, "")
	led := time.Duration(-1)
	if ci.LeaderSince != nil && !info.TimeStamp.IsZero() {
		led = info.TimeStamp.Sub(*ci.LeaderSince) // both on the leader's clock
	}
	for _, p := range ci.Replicas {
		r := peerReplica{name: p.Name, offline: p.Offline, pending: p.Pending, active: p.Active, lag: p.Lag}
		book.judgeReplica(r, "the leader of "+b.Name, led)
	}
}

// peerReplica is one observer's view of a peer, as nats-server reports it
// (its server and client packages each have a PeerInfo type).
type peerReplica struct {
	name             string
	offline, pending bool
	active           time.Duration // since the observer last heard from it; 0: not since its election
	lag              uint64
}

func replica(p server.PeerInfo) peerReplica {
	return peerReplica{name: p.Name, offline: p.Offline, pending: p.Pending, active: p.Active, lag: p.Lag}
}

// judge turns an observer's view of a peer into a verdict. led is how long
// the observer has led its group, or negative when not known. nats-server
// reports Active 0 for a peer the observer has not heard from since it
// became leader (it forgets followers' timestamps when it follows), so 0
// means "not yet", never "just now".
func judge(r peerReplica, observer string, led time.Duration) (string, PeerState, string) {
	switch {
	case r.offline:
		return r.name, PeerOffline, "nats-server reports it offline"
	case r.active == 0 && led > peerSilence:
		return r.name, PeerOffline, fmt.Sprintf("%s has not heard from it since its election %v ago", observer, led.Round(time.Second))
	case r.active == 0:
		return r.name, PeerUnknown, observer + " has not heard from it yet"
	case r.active > peerSilence:
		return r.name, PeerOffline, fmt.Sprintf("%s last heard from it %v ago", observer, r.active.Round(100*time.Millisecond))
	case r.pending:
		return r.name, PeerCatchingUp, "joining the group (as " + observer + " sees it)"
	case r.lag >= currentLag:
		return r.name, PeerCatchingUp, fmt.Sprintf("%d entries behind %s", r.lag, observer)
	}
	return r.name, PeerCurrent, ""
}

// peerBook collects the verdicts on each peer and keeps the most severe.
type peerBook struct{ peers map[string]*PeerStatus }

func newPeerBook() *peerBook { return &peerBook{peers: map[string]*PeerStatus{}} }

// add lists a peer, unknown until a view judges it.
func (b *peerBook) add(name string) *PeerStatus {
	p := b.peers[name]
	if p == nil {
		p = &PeerStatus{Name: name, State: PeerUnknown, Reason: "no view that answered reports on it"}
		b.peers[name] = p
	}
	return p
}

func (b *peerBook) judge(name string, state PeerState, reason string) {
	p := b.add(name)
	if state.severity() > p.State.severity() || (state == PeerUnknown && p.State == PeerUnknown) {
		p.State, p.Reason = state, reason
	}
}

// judgeReplica records an observer's view of a replica: its verdict, and
// its lag if that is the largest seen yet.
func (b *peerBook) judgeReplica(r peerReplica, observer string, led time.Duration) {
	b.judge(judge(r, observer, led))
	if p := b.add(r.name); r.lag > p.Lag {
		p.Lag = r.lag
	}
}

func (b *peerBook) list() []PeerStatus {
	var out []PeerStatus
	for _, p := range b.peers {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(x, y PeerStatus) int { return cmp.Compare(x.Name, y.Name) })
	return out
}

// ServeHTTP serves the node's Status as JSON: 200 whenever the node is
// open, with the parts that did not answer marked unknown, and 503 with
// {"error": ...} once it is closed. `concord status` reads it.
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st, err := n.Status(r.Context())
	writeStatus(w, st, err)
}

// WriteStatusError writes the JSON error answer of a status endpoint: 503
// with {"error": err's text}.
func WriteStatusError(w http.ResponseWriter, err error) { writeStatus(w, nil, err) }

func writeStatus(w http.ResponseWriter, st *Status, err error) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = enc.Encode(map[string]string{"error": err.Error()})
		return
	}
	_ = enc.Encode(st)
}
