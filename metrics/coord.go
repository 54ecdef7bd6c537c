package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/concordrpc/concord/coord/registry"
)

// DefaultCoordCacheFor is how long NewCoord's collector reuses a status
// read: scrapes within that time cost no coordination request.
const DefaultCoordCacheFor = 2 * time.Second

// coordReadTimeout bounds one status read; registry.ReadStatus bounds
// each of its parts by about a second.
const coordReadTimeout = 3 * time.Second

// StatusReader reads the coordination status, as registry.ReadStatus does
// for one node. An error means no node is available (starting, down or
// closed).
type StatusReader func(ctx context.Context) (*registry.Status, error)

// CoordOption configures NewCoord.
type CoordOption interface{ applyCoord(*Coord) }

type coordOptionFunc func(*Coord)

func (f coordOptionFunc) applyCoord(c *Coord) { f(c) }

// WithCacheFor sets how long a status read is reused by later scrapes.
// Default: DefaultCoordCacheFor.
func WithCacheFor(d time.Duration) CoordOption {
	return coordOptionFunc(func(c *Coord) { c.cacheFor = max(d, 0) })
}

// Coord is a prometheus.Collector of the coordination status. On a
// scrape it calls its StatusReader, unless a read finished less than the
// cache period ago; concurrent scrapes wait for the one read in progress.
// A read costs what registry.ReadStatus costs: a fixed number of
// JetStream requests and no consumer. It exports:
//
//   - concord_coord_up: 1 when the status was read, else 0 and nothing below
//   - concord_coord_node_info{mode,node}
//   - concord_coord_meta_leader_info{leader}, and
//     concord_coord_meta_leader_is_self: 1 if this node leads the meta group
//   - concord_coord_peers{state} and concord_coord_peer_state{peer,state}
//   - concord_coord_peer_lag_entries{peer}: the most Raft entries the peer
//     was behind a group's leader (coord.PeerStatus.Lag)
//   - concord_coord_stream_replicas, concord_coord_stream_messages,
//     concord_coord_stream_bytes and concord_coord_stream_known{stream,kind}
//   - concord_registry_instances{service,ready}
//   - concord_tcc_transactions{state} (unfinished, by state) and
//     concord_tcc_transactions_stuck
//   - concord_msg_consumer_pending_messages,
//     concord_msg_consumer_unacked_messages and
//     concord_msg_consumer_redelivered_messages{consumer,topic},
//     concord_msg_dead_letter_messages, and
//     concord_msg_outbox_rows and concord_msg_outbox_oldest_age_seconds{instance,store}
//
// A part of the status that did not answer (see registry.Status) is left
// out rather than reported as zero. A Coord is safe for concurrent use.
type Coord struct {
	read     StatusReader
	cacheFor time.Duration
	now      func() time.Time

	mu     sync.Mutex
	st     *registry.Status
	readAt time.Time
}

var (
	descUp          = prometheus.NewDesc("concord_coord_up", "1 if the coordination status was read at the last scrape, else 0.", nil, nil)
	descNode        = prometheus.NewDesc("concord_coord_node_info", "The coordination node this process reads through.", []string{"mode", "node"}, nil)
	descMetaLeader  = prometheus.NewDesc("concord_coord_meta_leader_info", "The JetStream meta leader, when known.", []string{"leader"}, nil)
	descLeaderSelf  = prometheus.NewDesc("concord_coord_meta_leader_is_self", "1 if this process's node is the JetStream meta leader.", nil, nil)
	descPeers       = prometheus.NewDesc("concord_coord_peers", "JetStream servers by their judged state.", []string{"state"}, nil)
	descPeerState   = prometheus.NewDesc("concord_coord_peer_state", "1 for each JetStream server, labelled with its judged state.", []string{"peer", "state"}, nil)
	descPeerLag     = prometheus.NewDesc("concord_coord_peer_lag_entries", "Most Raft entries a JetStream server was behind a group's leader in the last status read.", []string{"peer"}, nil)
	descReplicas    = prometheus.NewDesc("concord_coord_stream_replicas", "Configured replicas of a Concord bucket or stream.", []string{"stream", "kind"}, nil)
	descMessages    = prometheus.NewDesc("concord_coord_stream_messages", "Messages stored in a Concord bucket or stream.", []string{"stream", "kind"}, nil)
	descBytes       = prometheus.NewDesc("concord_coord_stream_bytes", "Size of the messages stored in a Concord bucket or stream, on one replica.", []string{"stream", "kind"}, nil)
	descKnown       = prometheus.NewDesc("concord_coord_stream_known", "1 if a Concord bucket or stream's info was read, with its leader known.", []string{"stream", "kind"}, nil)
	descInstances   = prometheus.NewDesc("concord_registry_instances", "Registered instances per service, ready or not.", []string{"service", "ready"}, nil)
	descTxs         = prometheus.NewDesc("concord_tcc_transactions", "Unfinished TCC transactions in the log, by state.", []string{"state"}, nil)
	descStuck       = prometheus.NewDesc("concord_tcc_transactions_stuck", "Decided TCC transactions whose Confirm or Cancel is being retried.", nil, nil)
	descPending     = prometheus.NewDesc("concord_msg_consumer_pending_messages", "Messages of a topic waiting to be delivered to a consumer.", []string{"consumer", "topic"}, nil)
	descUnacked     = prometheus.NewDesc("concord_msg_consumer_unacked_messages", "Messages delivered to a consumer and not yet answered.", []string{"consumer", "topic"}, nil)
	descRedelivered = prometheus.NewDesc("concord_msg_consumer_redelivered_messages", "Unanswered messages delivered to a consumer more than once.", []string{"consumer", "topic"}, nil)
	descDead        = prometheus.NewDesc("concord_msg_dead_letter_messages", "Messages in the dead-letter stream.", nil, nil)
	descOutboxRows  = prometheus.NewDesc("concord_msg_outbox_rows", "Committed outbox rows waiting to be published, for the outboxes this process relays.", []string{"instance", "store"}, nil)
	descOutboxAge   = prometheus.NewDesc("concord_msg_outbox_oldest_age_seconds", "Age of the oldest waiting outbox row; 0 when none wait.", []string{"instance", "store"}, nil)
)

// NewCoord returns a collector of the status read. Register it with a
// prometheus.Registerer.
func NewCoord(read StatusReader, opts ...CoordOption) *Coord {
	c := &Coord{read: read, cacheFor: DefaultCoordCacheFor, now: time.Now}
	for _, o := range opts {
		o.applyCoord(c)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Coord) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descNode, descMetaLeader, descLeaderSelf, descPeers, descPeerState, descPeerLag,
		descReplicas, descMessages, descBytes, descKnown, descInstances, descTxs, descStuck,
		descPending, descUnacked, descRedelivered, descDead, descOutboxRows, descOutboxAge} {
		ch <- d
	}
}

// status returns the cached status, reading a new one once it is older
// than the cache period. A failed read is cached too: while no node is
// available, scrapes do not retry faster than the period.
func (c *Coord) status() *registry.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); c.readAt.IsZero() || now.Sub(c.readAt) >= c.cacheFor {
		ctx, cancel := context.WithTimeout(context.Background(), coordReadTimeout)
		st, err := c.read(ctx)
		cancel()
		if err != nil {
			st = nil
		}
		c.st, c.readAt = st, c.now()
	}
	return c.st
}

// Collect implements prometheus.Collector.
func (c *Coord) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	if st == nil || st.Status == nil {
		ch <- gauge(descUp, 0)
		return
	}
	ch <- gauge(descUp, 1)
	ch <- gauge(descNode, 1, st.Mode, st.Node)
	if st.MetaLeader != "" {
		ch <- gauge(descMetaLeader, 1, st.MetaLeader)
	}
	ch <- gauge(descLeaderSelf, boolValue(st.MetaLeader != "" && st.MetaLeader == st.Node))

	states := map[string]float64{"current": 0, "catching_up": 0, "offline": 0, "unknown": 0}
	seen := map[string]bool{}
	for _, p := range st.Peers {
		state := string(p.State)
		if _, ok := states[state]; !ok {
			state = unknownLabel
		}
		states[state]++
		if !seen[p.Name] {
			seen[p.Name] = true
			ch <- gauge(descPeerState, 1, p.Name, state)
			ch <- gauge(descPeerLag, float64(p.Lag), p.Name)
		}
	}
	for state, n := range states {
		ch <- gauge(descPeers, n, state)
	}

	seen = map[string]bool{}
	for _, b := range st.Buckets {
		if seen[b.Name] {
			continue
		}
		seen[b.Name] = true
		ch <- gauge(descKnown, boolValue(b.Unknown == ""), b.Name, b.Kind)
		if b.Replicas > 0 { // the info was read
			ch <- gauge(descReplicas, float64(b.Replicas), b.Name, b.Kind)
			ch <- gauge(descMessages, float64(b.Messages), b.Name, b.Kind)
			ch <- gauge(descBytes, float64(b.Bytes), b.Name, b.Kind)
		}
	}

	if st.ServicesUnknown == "" {
		for _, s := range st.Services {
			var ready, notReady float64
			for _, in := range s.Instances {
				if in.Ready {
					ready++
				} else {
					notReady++
				}
			}
			ch <- gauge(descInstances, ready, s.Name, "true")
			ch <- gauge(descInstances, notReady, s.Name, "false")
		}
	}

	if tx := st.Transactions; tx != nil && tx.Unknown == "" {
		byState := map[string]float64{"trying": 0, "confirming": 0, "cancelling": 0}
		for _, r := range append(tx.InFlight[:len(tx.InFlight):len(tx.InFlight)], tx.Stuck...) {
			if _, ok := byState[string(r.State)]; ok {
				byState[string(r.State)]++
			}
		}
		for state, n := range byState {
			ch <- gauge(descTxs, n, state)
		}
		ch <- gauge(descStuck, float64(len(tx.Stuck)))
	}

	if m := st.Messages; m != nil {
		if m.ConsumersUnknown == "" {
			type key struct{ name, topic string }
			type counts struct{ pending, unacked, redelivered float64 }
			sums := map[key]*counts{}
			var order []key
			for _, cs := range m.Consumers {
				k := key{cs.Name, cs.Topic}
				if sums[k] == nil {
					sums[k] = &counts{}
					order = append(order, k)
				}
				sums[k].pending += float64(cs.Pending)
				sums[k].unacked += float64(cs.InFlight)
				sums[k].redelivered += float64(cs.Redelivered)
			}
			for _, k := range order {
				ch <- gauge(descPending, sums[k].pending, k.name, k.topic)
				ch <- gauge(descUnacked, sums[k].unacked, k.name, k.topic)
				ch <- gauge(descRedelivered, sums[k].redelivered, k.name, k.topic)
			}
		}
		if m.DeadLettersUnknown == "" {
			ch <- gauge(descDead, float64(m.DeadLetters))
		}
		type key struct{ instance, store string }
		type depth struct{ rows, age float64 }
		outs := map[key]*depth{}
		var order []key
		for _, o := range m.Outboxes {
			if o.Unknown != "" {
				continue
			}
			k := key{o.Instance, o.Store}
			if outs[k] == nil {
				outs[k] = &depth{}
				order = append(order, k)
			}
			outs[k].rows += float64(o.Rows)
			outs[k].age = max(outs[k].age, float64(o.OldestAgeMillis)/1000)
		}
		for _, k := range order {
			ch <- gauge(descOutboxRows, outs[k].rows, k.instance, k.store)
			ch <- gauge(descOutboxAge, outs[k].age, k.instance, k.store)
		}
	}
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
