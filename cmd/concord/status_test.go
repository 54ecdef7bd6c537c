package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/registry"
	"github.com/concordrpc/concord/coord/txlog"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/msg/msgstatus"
)

// TestStatusJSON reads a node's status endpoint with --json: the output
// is the indented JSON status, which parses back into a registry.Status
// with the node, its peers, its buckets and its registered services.
func TestStatusJSON(t *testing.T) {
	n := nodetest.Open(t, coord.WithName("solo"))
	quiet := slog.New(slog.DiscardHandler)
	res := registry.NewResolver(n, registry.ResolverLogger(quiet))
	defer res.Close()
	reg, err := registry.Register(nodetest.Within(t, 10*time.Second), n,
		registry.Registration{Service: "greeter", ID: "a", BaseURL: "http://127.0.0.1:1", Ready: true}, registry.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	srv := httptest.NewServer(registry.StatusHandler(n, res))
	defer srv.Close()

	var out bytes.Buffer
	if err := run(t.Context(), []string{"status", "--json", "-addr", srv.URL}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "{\n  \"mode\": \"embedded\",\n") || !strings.HasSuffix(out.String(), "}\n") {
		t.Fatalf("not indented JSON:\n%s", out.String())
	}
	st := registry.Status{Status: &coord.Status{}}
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Node != "solo" || st.MetaLeader != "solo" || len(st.Peers) != 1 || st.Peers[0].State != coord.PeerCurrent || len(st.Buckets) != 8 {
		t.Fatalf("status %+v", st.Status)
	}
	if len(st.Services) != 1 || st.Services[0].Name != "greeter" || len(st.Services[0].Instances) != 1 || st.ServicesUnknown != "" {
		t.Fatalf("services %+v (%s)", st.Services, st.ServicesUnknown)
	}
	if m := st.Messages; m == nil || m.ConsumersUnknown != "" || m.DeadLettersUnknown != "" || m.Consumers == nil || m.Outboxes == nil {
		t.Fatalf("messages %+v", m)
	}
	// The default is the table.
	out.Reset()
	if err := run(t.Context(), []string{"status", "-addr", srv.URL}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"meta leader: solo", "solo (current)", "BUCKET", "greeter"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "unknown") {
		t.Errorf("complete status shows unknown parts:\n%s", out.String())
	}
}

// TestStatusTableShowsUnknown prints a status taken during a failover:
// every unknown part shows as "?" with its reason, and peers show their
// state and why.
func TestStatusTableShowsUnknown(t *testing.T) {
	st := &registry.Status{
		Status: &coord.Status{
			Mode: "cluster", Node: "n1",
			MetaLeaderUnknown: "no meta leader: an election is in progress",
			Peers: []coord.PeerStatus{
				{Name: "n1", State: coord.PeerCurrent},
				{Name: "n2", State: coord.PeerCatchingUp, Reason: "500 entries behind the leader of CONCORD_TXLOG"},
				{Name: "n3", State: coord.PeerOffline, Reason: "no route from this node"},
			},
			Buckets: []coord.BucketStatus{
				{Name: "KV_concord_locks", Kind: "kv", Replicas: 3, Leader: "n1", Messages: 4, Bytes: 612},
				{Name: "KV_concord_config", Kind: "kv", Unknown: "no answer within 1s (its leader may be down, or being elected)"},
				{Name: "CONCORD_TXLOG", Kind: "stream", Replicas: 3, Messages: 9, Bytes: 2048, Unknown: "no leader: an election is in progress (a replica answered)"},
			},
		},
		Services:        []registry.ServiceStatus{},
		ServicesUnknown: "no answer within 1s",
	}
	var out bytes.Buffer
	printStatus(&out, st)
	lines := strings.Split(out.String(), "\n")
	for _, want := range []string{
		"meta leader: ? (no meta leader: an election is in progress)",
		"  n2 (catching up: 500 entries behind the leader of CONCORD_TXLOG)",
		"  n3 (offline: no route from this node)",
		"KV_concord_locks   kv      3         n1      4         612",
		"KV_concord_config  kv      ?         ?       ?         ?",
		"CONCORD_TXLOG      stream  3         ?       9         2048",
		"unknown:",
		"  KV_concord_config: no answer within 1s (its leader may be down, or being elected)",
		"  CONCORD_TXLOG: no leader: an election is in progress (a replica answered)",
		"  services: no answer within 1s",
	} {
		if !hasLine(lines, want) {
			t.Errorf("table lacks the line %q:\n%s", want, out.String())
		}
	}
}

func hasLine(lines []string, want string) bool {
	for _, l := range lines {
		if strings.TrimRight(l, " ") == want {
			return true
		}
	}
	return false
}

// TestStatusTableShowsTransactions prints TCC transactions in flight,
// stuck (with the failing branch's last error) and finished.
func TestStatusTableShowsTransactions(t *testing.T) {
	created := time.Now().Add(-3 * time.Second)
	br := func(service string, done bool, errText string) txlog.Branch {
		return txlog.Branch{ID: "b1", Service: service, Done: done, Error: errText}
	}
	st := &registry.Status{
		Status:   &coord.Status{Mode: "embedded", Node: "n1", MetaLeader: "n1"},
		Services: []registry.ServiceStatus{},
		Transactions: &txlog.Status{
			InFlight: []*txlog.Record{{ID: "t1", State: txlog.StateTrying, Created: created, Branches: []txlog.Branch{br("checking", false, "")}}},
			Stuck: []*txlog.Record{{ID: "t2", State: txlog.StateConfirming, Created: created, Attempts: 4, Coordinator: "transfer-1",
				Branches: []txlog.Branch{br("savings", false, "unavailable: dial tcp 127.0.0.1:1: connection refused")}}},
			Finished: []*txlog.Record{{ID: "t3", State: txlog.StateCancelled, Created: created, Cause: "branch b2 (/bank.v1.SavingsService/Change) failed with failed_precondition: insufficient funds",
				Branches: []txlog.Branch{br("checking", true, "")}}},
		},
	}
	var out bytes.Buffer
	printStatus(&out, st)
	for _, want := range []string{
		"TRANSACTION", "t1", "trying", "stuck confirming", "transfer-1",
		"t2 branch b1 (savings): unavailable: dial tcp 127.0.0.1:1: connection refused",
		"t3: branch b2 (/bank.v1.SavingsService/Change) failed with failed_precondition: insufficient funds",
		"checking (done)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// TestStatusTableShowsMessages prints the message consumers, the dead
// letters and the outboxes, with the parts that were not read.
func TestStatusTableShowsMessages(t *testing.T) {
	st := &registry.Status{
		Status:   &coord.Status{Mode: "embedded", Node: "n1", MetaLeader: "n1"},
		Services: []registry.ServiceStatus{},
		Messages: &msgstatus.Status{
			Consumers: []msgstatus.Consumer{
				{Name: "billing", Topic: "orders.placed", Partitions: 17, Pending: 12, InFlight: 3, Redelivered: 1},
				{Name: "statements", Topic: "transfers.done", Partitions: 17},
			},
			DeadLetters: 2,
			Outboxes: []msgstatus.Outbox{
				{Instance: "n1", Store: "badger", Rows: 5, Oldest: time.Now().Add(-1500 * time.Millisecond), OldestAgeMillis: 1500},
				{Instance: "n1", Store: "sqlite"},
				{Instance: "n1", Store: "postgres", Unknown: "no answer within 1s"},
			},
		},
	}
	var out bytes.Buffer
	printStatus(&out, st)
	lines := strings.Split(out.String(), "\n")
	for _, want := range []string{
		"CONSUMER    TOPIC           PENDING  IN FLIGHT  REDELIVERED",
		"billing     orders.placed   12       3          1",
		"statements  transfers.done  0        0          0",
		"dead letters: 2 (concord dead-letters list)",
		"OUTBOX  STORE     ROWS  OLDEST",
		"n1      badger    5     1.5s ago",
		"n1      sqlite    0     -",
		"n1      postgres  ?     ?",
		"unknown:",
		"  outbox n1 (postgres): no answer within 1s",
	} {
		if !hasLine(lines, want) {
			t.Errorf("table lacks the line %q:\n%s", want, out.String())
		}
	}
	// Unread parts show under unknown; nothing else is printed for them.
	st.Messages = &msgstatus.Status{Consumers: []msgstatus.Consumer{}, Outboxes: []msgstatus.Outbox{},
		ConsumersUnknown: "no answer within 1s", DeadLettersUnknown: "no answer within 1s"}
	out.Reset()
	printStatus(&out, st)
	lines = strings.Split(out.String(), "\n")
	for _, want := range []string{"  message consumers: no answer within 1s", "  dead letters: no answer within 1s"} {
		if !hasLine(lines, want) {
			t.Errorf("table lacks the line %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "CONSUMER") || strings.Contains(out.String(), "OUTBOX") {
		t.Errorf("empty parts printed:\n%s", out.String())
	}
}

// TestStatusUnavailable reads an admin endpoint that answers 503 with a
// JSON error, as an App does while its coordination starts or is
// unreachable (coord.WriteStatusError): status fails, with or without
// -json, its error carries the endpoint's text, and nothing is printed as
// if it were a status. It fails if the 503 body is parsed as a status (an
// empty table, or the error object echoed as -json output and exit 0), or
// if the error drops the endpoint's reason for a bare "503".
func TestStatusUnavailable(t *testing.T) {
	const reason = "concord: coordination not available: coord: connect to nats://127.0.0.1:1: coord: coordination unavailable"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/concord/status" {
			http.NotFound(w, r)
			return
		}
		coord.WriteStatusError(w, errors.New(reason))
	}))
	defer srv.Close()
	for _, args := range [][]string{
		{"status", "-addr", srv.URL},
		{"status", "-json", "-addr", srv.URL},
		{"status", "-addr", strings.TrimPrefix(srv.URL, "http://")},
	} {
		var out bytes.Buffer
		err := run(t.Context(), args, &out, io.Discard)
		if err == nil {
			t.Errorf("%q: no error from a 503; printed:\n%s", args, out.String())
			continue
		}
		if !strings.Contains(err.Error(), reason) {
			t.Errorf("%q: error %q lacks the endpoint's reason %q", args, err, reason)
		}
		var usage usageError
		if errors.As(err, &usage) {
			t.Errorf("%q: a 503 reported as a usage error (exit 2): %v", args, err)
		}
		if out.Len() != 0 {
			t.Errorf("%q: printed a status from a 503:\n%s", args, out.String())
		}
	}
}
