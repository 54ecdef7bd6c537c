package coord

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Status is a snapshot of the coordination backend.
type Status struct {
	// Mode is "embedded", "cluster" or "client".
	Mode string `json:"mode"`
	// Node is this node's name.
	Node string `json:"node"`
	// MetaLeader is the JetStream meta leader, or "" when unknown (client
	// mode cannot see it).
	MetaLeader string `json:"meta_leader,omitempty"`
	// Peers lists the JetStream peers known to this node.
	Peers []PeerStatus `json:"peers,omitempty"`
	// Buckets lists Concord's buckets and streams.
	Buckets []BucketStatus `json:"buckets"`
}

// PeerStatus describes one JetStream peer.
type PeerStatus struct {
	// Name is the peer's server name.
	Name string `json:"name"`
	// Current reports whether the peer is caught up with the meta leader.
	Current bool `json:"current"`
	// Offline reports whether the peer is known to be unreachable.
	Offline bool `json:"offline,omitempty"`
	// LastSeen is how long ago this node last heard from the peer (0 for
	// this node itself).
	LastSeen time.Duration `json:"last_seen_ns,omitempty"`
}

// BucketStatus describes one bucket or stream.
type BucketStatus struct {
	// Name is the bucket or stream name.
	Name string `json:"name"`
	// Kind is "kv" or "stream".
	Kind string `json:"kind"`
	// Replicas is the configured replica count.
	Replicas int `json:"replicas"`
	// Leader is the server leading its Raft group ("" for R1 without
	// clustering).
	Leader string `json:"leader,omitempty"`
	// Messages is the number of stored messages.
	Messages uint64 `json:"messages"`
}

// Status reports the node's view of the backend.
func (n *Node) Status(ctx context.Context) (*Status, error) {
	if n.nc == nil || n.nc.IsClosed() {
		return nil, ErrClosed
	}
	st := &Status{Mode: n.cfg.mode.String(), Node: n.cfg.name}
	if n.srv != nil && !n.srv.JetStreamIsClustered() {
		st.MetaLeader = n.srv.Name() // a lone node leads itself
		st.Peers = []PeerStatus{{Name: n.srv.Name(), Current: true}}
	} else if n.srv != nil {
		if jsz, err := n.srv.Jsz(&server.JSzOptions{}); err == nil && jsz.Meta != nil {
			st.MetaLeader = jsz.Meta.Leader
			st.Peers = append(st.Peers, PeerStatus{Name: n.srv.Name(), Current: true})
			for _, p := range jsz.Meta.Replicas {
				st.Peers = append(st.Peers, PeerStatus{Name: p.Name, Current: p.Current, Offline: p.Offline, LastSeen: p.Active})
			}
			sort.Slice(st.Peers, func(i, j int) bool { return st.Peers[i].Name < st.Peers[j].Name })
		}
	}
	add := func(name, kind string) error {
		s, err := n.js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("coord: status of %s: %w", name, err)
		}
		info := s.CachedInfo() // fetched by Stream: one request per stream
		b := BucketStatus{Name: name, Kind: kind, Replicas: info.Config.Replicas, Messages: info.State.Msgs}
		if info.Cluster != nil {
			b.Leader = info.Cluster.Leader
		}
		st.Buckets = append(st.Buckets, b)
		return nil
	}
	for _, b := range buckets(n.replicas) {
		if err := add("KV_"+b.Bucket, "kv"); err != nil {
			return nil, err
		}
	}
	for _, s := range streams(n.replicas) {
		if err := add(s.Name, "stream"); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// ServeHTTP serves the node's Status as JSON, or 503 with {"error": ...}
// when it cannot be read. `concord status` reads it.
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st, err := n.Status(r.Context())
	writeStatus(w, st, err)
}

// WriteStatusError writes the JSON error answer of a status endpoint.
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
