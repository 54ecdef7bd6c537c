package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/coord/registry"
	"github.com/concordrpc/concord/coord/txlog"
	"github.com/concordrpc/concord/metrics"
	"github.com/concordrpc/concord/msg/msgstatus"
	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/tcc"
)

const greet = "/greeter.v1.GreeterService/Greet"

func known(p string) bool { return p == greet }

// fullStatus is a status with every part filled, so that every
// coordination metric is exported.
func fullStatus() *registry.Status {
	return &registry.Status{
		Status: &coord.Status{
			Mode: "cluster", Node: "n1", MetaLeader: "n1",
			Peers: []coord.PeerStatus{{Name: "n1", State: coord.PeerCurrent}, {Name: "n2", State: coord.PeerCatchingUp, Lag: 152}},
			Buckets: []coord.BucketStatus{
				{Name: "KV_concord_locks", Kind: "kv", Replicas: 3, Leader: "n1", Messages: 4, Bytes: 512},
				{Name: "CONCORD_TXLOG", Kind: "stream", Unknown: "no answer"},
			},
		},
		Services: []registry.ServiceStatus{{Name: "greeter", Instances: []registry.Registration{{Ready: true}, {Ready: false}}}},
		Transactions: &txlog.Status{
			InFlight: []*txlog.Record{{State: txlog.StateTrying}},
			Stuck:    []*txlog.Record{{State: txlog.StateConfirming}},
		},
		Messages: &msgstatus.Status{
			Consumers:   []msgstatus.Consumer{{Name: "mailer", Topic: "orders", Pending: 3, InFlight: 1, Redelivered: 1}},
			DeadLetters: 2,
			Outboxes: []msgstatus.Outbox{
				{Instance: "n1", Store: "badger", Rows: 5, OldestAgeMillis: 1500},
				{Instance: "n1", Store: "badger", Rows: 1, OldestAgeMillis: 200},
			},
		},
	}
}

// everything returns a registry with every metric the package exports,
// each observed at least once.
func everything(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := metrics.NewServer(reg, known)
	if err != nil {
		t.Fatal(err)
	}
	s.Observe(t.Context(), rpc.CallReport{Procedure: greet, Protocol: "grpc", Duration: time.Millisecond, ReceivedBytes: 10, SentBytes: 20})
	_ = s.Interceptor()(func(context.Context, connect.Spec, connect.ServerStream) error { return nil })(t.Context(), connect.Spec{Procedure: greet}, nil)
	tc, err := metrics.NewTCC(reg)
	if err != nil {
		t.Fatal(err)
	}
	tc.Observe(tcc.PhaseReport{Service: "bank", Procedure: "/bank.v1.Bank/Try", Phase: tcc.PhaseTry, Duration: time.Millisecond})
	reg.MustRegister(metrics.NewCoord(func(context.Context) (*registry.Status, error) { return fullStatus(), nil }))
	c, err := metrics.NewClient(reg)
	if err != nil {
		t.Fatal(err)
	}
	c.Observe(t.Context(), rpc.ClientCallReport{Service: "greeter", Procedure: greet, Code: connect.CodeUnavailable, Duration: time.Millisecond, Retries: 2})
	reg.MustRegister(metrics.NewGovernance(fullGovernance(2)))
	l, err := metrics.NewLocks(reg)
	if err != nil {
		t.Fatal(err)
	}
	l.Observe(lock.Event{Kind: lock.EventGranted, Lock: "mutex", Waited: true, Wait: 20 * time.Millisecond})
	l.Observe(lock.Event{Kind: lock.EventLeaseLost, Lock: "election"})
	return reg
}

// fullGovernance is a source with a local and a cluster limit, shed calls
// and n breakers (instances i0, i1, ...: the first open, the second
// half-open, the rest closed).
func fullGovernance(n int) metrics.GovernanceSource {
	return metrics.GovernanceSource{
		Limits: func() []rpc.LimitStatus {
			return []rpc.LimitStatus{
				{Procedure: "/greeter.v1.GreeterService/Shout", Scope: "local", Admitted: 12, Refused: 3, Saturation: 0.2},
				{Procedure: greet, Scope: "cluster", Admitted: 5, Borrowed: 40},
			}
		},
		Shed: func() uint64 { return 7 },
		Breakers: func() []rpc.BreakerStatus {
			var bs []rpc.BreakerStatus
			for i := range n {
				state := []string{"open", "half_open", "closed"}[min(i, 2)]
				bs = append(bs, rpc.BreakerStatus{Service: "greeter", Instance: fmt.Sprintf("i%d", i), Address: "http://x", State: state, Failures: 4 - min(i, 4), InFlight: int64(i % 2)})
			}
			return bs
		},
	}
}

// TestPromlint runs client_golang's promlint (testutil.GatherAndLint)
// over every metric the package exports.
func TestPromlint(t *testing.T) {
	problems, err := testutil.GatherAndLint(everything(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestCoordMetrics checks the values of a full status.
func TestCoordMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCoord(func(context.Context) (*registry.Status, error) { return fullStatus(), nil }))
	want := `
# HELP concord_msg_outbox_rows Committed outbox rows waiting to be published, for the outboxes this process relays.
# TYPE concord_msg_outbox_rows gauge
concord_msg_outbox_rows{instance="n1",store="badger"} 6
# HELP concord_msg_outbox_oldest_age_seconds Age of the oldest waiting outbox row; 0 when none wait.
# TYPE concord_msg_outbox_oldest_age_seconds gauge
concord_msg_outbox_oldest_age_seconds{instance="n1",store="badger"} 1.5
# HELP concord_registry_instances Registered instances per service, ready or not.
# TYPE concord_registry_instances gauge
concord_registry_instances{ready="false",service="greeter"} 1
concord_registry_instances{ready="true",service="greeter"} 1
# HELP concord_tcc_transactions Unfinished TCC transactions in the log, by state.
# TYPE concord_tcc_transactions gauge
concord_tcc_transactions{state="cancelling"} 0
concord_tcc_transactions{state="confirming"} 1
concord_tcc_transactions{state="trying"} 1
# HELP concord_coord_stream_known 1 if a Concord bucket or stream's info was read, with its leader known.
# TYPE concord_coord_stream_known gauge
concord_coord_stream_known{kind="kv",stream="KV_concord_locks"} 1
concord_coord_stream_known{kind="stream",stream="CONCORD_TXLOG"} 0
# HELP concord_coord_stream_replicas Configured replicas of a Concord bucket or stream.
# TYPE concord_coord_stream_replicas gauge
concord_coord_stream_replicas{kind="kv",stream="KV_concord_locks"} 3
# HELP concord_coord_stream_bytes Size of the messages stored in a Concord bucket or stream, on one replica.
# TYPE concord_coord_stream_bytes gauge
concord_coord_stream_bytes{kind="kv",stream="KV_concord_locks"} 512
# HELP concord_coord_meta_leader_is_self 1 if this process's node is the JetStream meta leader.
# TYPE concord_coord_meta_leader_is_self gauge
concord_coord_meta_leader_is_self 1
# HELP concord_coord_peers JetStream servers by their judged state.
# TYPE concord_coord_peers gauge
concord_coord_peers{state="catching_up"} 1
concord_coord_peers{state="current"} 1
concord_coord_peers{state="offline"} 0
concord_coord_peers{state="unknown"} 0
# HELP concord_coord_peer_lag_entries Most Raft entries a JetStream server was behind a group's leader in the last status read.
# TYPE concord_coord_peer_lag_entries gauge
concord_coord_peer_lag_entries{peer="n1"} 0
concord_coord_peer_lag_entries{peer="n2"} 152
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"concord_msg_outbox_rows", "concord_msg_outbox_oldest_age_seconds", "concord_registry_instances",
		"concord_tcc_transactions", "concord_coord_stream_known", "concord_coord_stream_replicas", "concord_coord_stream_bytes",
		"concord_coord_meta_leader_is_self", "concord_coord_peers", "concord_coord_peer_lag_entries"); err != nil {
		t.Fatal(err)
	}
}

// TestCoordDown: a failed read exports concord_coord_up 0 and nothing
// else.
func TestCoordDown(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCoord(func(context.Context) (*registry.Status, error) { return nil, errors.New("down") }))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP concord_coord_up 1 if the coordination status was read at the last scrape, else 0.
# TYPE concord_coord_up gauge
concord_coord_up 0
`)); err != nil {
		t.Fatal(err)
	}
}

// TestCoordCache: scrapes within the cache period, concurrent or not,
// cost one status read; the next one after it reads again.
func TestCoordCache(t *testing.T) {
	var reads atomic.Int32
	c := metrics.NewCoord(func(context.Context) (*registry.Status, error) {
		reads.Add(1)
		return fullStatus(), nil
	}, metrics.WithCacheFor(2*time.Second))
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	c.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := reg.Gather(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := reads.Load(); n != 1 {
		t.Fatalf("20 scrapes within the period made %d reads, want 1", n)
	}
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	if n := reads.Load(); n != 2 {
		t.Fatalf("a scrape after the period made %d reads in all, want 2", n)
	}
}

// TestServerLabelsBounded: calls to many distinct unregistered
// procedures, with odd protocols and codes, add one series, labelled
// "unknown", not one per value.
func TestServerLabelsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := metrics.NewServer(reg, known)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		s.Observe(t.Context(), rpc.CallReport{Procedure: fmt.Sprintf("/evil.Svc/M%d", i), Protocol: fmt.Sprintf("p%d", i), Code: connect.Code(100 + i)})
	}
	s.Observe(t.Context(), rpc.CallReport{Procedure: greet, Protocol: "connect", Code: connect.CodeNotFound})
	if n := testutil.CollectAndCount(reg, "concord_rpc_server_calls_total"); n != 2 {
		t.Fatalf("%d series, want 2", n)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP concord_rpc_server_calls_total RPC calls finished by the server, by procedure, protocol and code.
# TYPE concord_rpc_server_calls_total counter
concord_rpc_server_calls_total{code="not_found",procedure="/greeter.v1.GreeterService/Greet",protocol="connect"} 1
concord_rpc_server_calls_total{code="unknown",procedure="unknown",protocol="unknown"} 1000
`), "concord_rpc_server_calls_total"); err != nil {
		t.Fatal(err)
	}
}

// TestNewServerTwice: a second set on one registry is refused, not
// panicked on.
func TestNewServerTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := metrics.NewServer(reg, known); err != nil {
		t.Fatal(err)
	}
	var already prometheus.AlreadyRegisteredError
	if _, err := metrics.NewServer(reg, known); !errors.As(err, &already) {
		t.Fatalf("second NewServer: %v, want AlreadyRegisteredError", err)
	}
}

// TestClientMetrics checks the client metrics of two calls.
func TestClientMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := metrics.NewClient(reg)
	if err != nil {
		t.Fatal(err)
	}
	c.Observe(t.Context(), rpc.ClientCallReport{Service: "greeter", Procedure: greet, Protocol: "connect", Duration: time.Millisecond, SentBytes: 100, ReceivedBytes: 5000})
	c.Observe(t.Context(), rpc.ClientCallReport{Service: "greeter", Procedure: greet, Protocol: "grpc", Code: connect.CodeUnavailable, Duration: time.Second, Retries: 2, SentBytes: 100})
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP concord_rpc_client_calls_total RPC calls made by the process's clients, by upstream service, protocol and code.
# TYPE concord_rpc_client_calls_total counter
concord_rpc_client_calls_total{code="ok",protocol="connect",service="greeter"} 1
concord_rpc_client_calls_total{code="unavailable",protocol="grpc",service="greeter"} 1
# HELP concord_rpc_client_retries_total Attempts client calls made after their first, by upstream service.
# TYPE concord_rpc_client_retries_total counter
concord_rpc_client_retries_total{service="greeter"} 2
`), "concord_rpc_client_calls_total", "concord_rpc_client_retries_total"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"concord_rpc_client_call_duration_seconds", "concord_rpc_client_request_message_bytes", "concord_rpc_client_response_message_bytes"} {
		if n := testutil.CollectAndCount(reg, name); n != 2 {
			t.Fatalf("%d %s series, want 2 (one per protocol)", n, name)
		}
	}
}

// TestGovernanceMetrics checks the limits, the shed calls and the
// breakers, and that the breaker series stop at MaxBreakerSeries.
func TestGovernanceMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewGovernance(fullGovernance(3)))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP concord_rpc_limit_admitted_calls_total Calls a rate limit admitted since the process started.
# TYPE concord_rpc_limit_admitted_calls_total counter
concord_rpc_limit_admitted_calls_total{procedure="/greeter.v1.GreeterService/Greet"} 5
concord_rpc_limit_admitted_calls_total{procedure="/greeter.v1.GreeterService/Shout"} 12
# HELP concord_rpc_limit_refused_calls_total Calls a rate limit refused (resource_exhausted) since the process started.
# TYPE concord_rpc_limit_refused_calls_total counter
concord_rpc_limit_refused_calls_total{procedure="/greeter.v1.GreeterService/Greet"} 0
concord_rpc_limit_refused_calls_total{procedure="/greeter.v1.GreeterService/Shout"} 3
# HELP concord_rpc_limit_borrowed_tokens_total Tokens a cluster-scoped rate limit drew from the cluster's limiter store.
# TYPE concord_rpc_limit_borrowed_tokens_total counter
concord_rpc_limit_borrowed_tokens_total{procedure="/greeter.v1.GreeterService/Greet"} 40
# HELP concord_rpc_limit_saturation_ratio Share of calls a rate limit refused over the last 10 to 20 seconds.
# TYPE concord_rpc_limit_saturation_ratio gauge
concord_rpc_limit_saturation_ratio{procedure="/greeter.v1.GreeterService/Greet"} 0
concord_rpc_limit_saturation_ratio{procedure="/greeter.v1.GreeterService/Shout"} 0.2
# HELP concord_rpc_server_shed_calls_total Calls refused with unavailable past the server's in-flight bound.
# TYPE concord_rpc_server_shed_calls_total counter
concord_rpc_server_shed_calls_total 7
# HELP concord_rpc_client_breaker_state Circuit breaker state of an upstream instance: 0 closed, 1 half-open, 2 open.
# TYPE concord_rpc_client_breaker_state gauge
concord_rpc_client_breaker_state{instance="i0",service="greeter"} 2
concord_rpc_client_breaker_state{instance="i1",service="greeter"} 1
concord_rpc_client_breaker_state{instance="i2",service="greeter"} 0
# HELP concord_rpc_client_breaker_failures Failed calls in a row to an upstream instance, as its breakers counted them.
# TYPE concord_rpc_client_breaker_failures gauge
concord_rpc_client_breaker_failures{instance="i0",service="greeter"} 4
concord_rpc_client_breaker_failures{instance="i1",service="greeter"} 3
concord_rpc_client_breaker_failures{instance="i2",service="greeter"} 2
# HELP concord_rpc_client_breaker_instances_omitted Upstream instances left out of the breaker metrics past their series bound.
# TYPE concord_rpc_client_breaker_instances_omitted gauge
concord_rpc_client_breaker_instances_omitted 0
# HELP concord_rpc_client_calls_in_flight Client calls (attempts) to an upstream service that have not ended.
# TYPE concord_rpc_client_calls_in_flight gauge
concord_rpc_client_calls_in_flight{service="greeter"} 1
`)); err != nil {
		t.Fatal(err)
	}

	big := prometheus.NewRegistry()
	big.MustRegister(metrics.NewGovernance(fullGovernance(metrics.MaxBreakerSeries + 10)))
	if n := testutil.CollectAndCount(big, "concord_rpc_client_breaker_state"); n != metrics.MaxBreakerSeries {
		t.Fatalf("%d breaker series, want %d", n, metrics.MaxBreakerSeries)
	}
	if err := testutil.GatherAndCompare(big, strings.NewReader(`
# HELP concord_rpc_client_breaker_instances_omitted Upstream instances left out of the breaker metrics past their series bound.
# TYPE concord_rpc_client_breaker_instances_omitted gauge
concord_rpc_client_breaker_instances_omitted 10
# HELP concord_rpc_client_calls_in_flight Client calls (attempts) to an upstream service that have not ended.
# TYPE concord_rpc_client_calls_in_flight gauge
concord_rpc_client_calls_in_flight{service="greeter"} 133
`), "concord_rpc_client_breaker_instances_omitted", "concord_rpc_client_calls_in_flight"); err != nil {
		t.Fatal(err)
	}
}

// TestLockMetrics checks the lock metrics of a few events.
func TestLockMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	l, err := metrics.NewLocks(reg)
	if err != nil {
		t.Fatal(err)
	}
	l.Observe(lock.Event{Kind: lock.EventGranted, Lock: "mutex"})
	l.Observe(lock.Event{Kind: lock.EventGranted, Lock: "mutex", Waited: true, Wait: 20 * time.Millisecond})
	l.Observe(lock.Event{Kind: lock.EventGranted, Lock: "election", Wait: time.Millisecond / 2})
	l.Observe(lock.Event{Kind: lock.EventLeaseLost, Lock: "mutex"})
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP concord_lock_grants_total Locks and leaderships granted, by kind (mutex or election).
# TYPE concord_lock_grants_total counter
concord_lock_grants_total{kind="election"} 1
concord_lock_grants_total{kind="mutex"} 2
# HELP concord_lock_waits_total Grants that had to wait for another holder, by kind.
# TYPE concord_lock_waits_total counter
concord_lock_waits_total{kind="mutex"} 1
# HELP concord_lock_leases_lost_total Grants that ended because their lease was lost rather than released, by kind.
# TYPE concord_lock_leases_lost_total counter
concord_lock_leases_lost_total{kind="mutex"} 1
`), "concord_lock_grants_total", "concord_lock_waits_total", "concord_lock_leases_lost_total"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.CollectAndCount(reg, "concord_lock_wait_duration_seconds"); got != 2 {
		t.Fatalf("%d wait histograms, want 2 (mutex, election)", got)
	}
}
