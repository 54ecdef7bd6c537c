package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/coord/txlog"
	"github.com/concordrpc/concord/msg/msgstatus"
)

// servicesTimeout bounds the read of the registry's services in a status
// read, like coord.Node.Status bounds each of its parts.
const servicesTimeout = time.Second

// ServiceStatus lists one service's registered instances.
type ServiceStatus struct {
	// Name is the discovery name.
	Name string `json:"name"`
	// Instances are the registrations, ready or not.
	Instances []Registration `json:"instances"`
}

// Status is the coordination status with the registry's services, the
// TCC transaction log and durable messaging.
type Status struct {
	*coord.Status
	// Services lists every registered service; empty when
	// ServicesUnknown is set.
	Services []ServiceStatus `json:"services"`
	// ServicesUnknown is "" when Services was read, and otherwise says why
	// not (no answer within the time bound, or the read's error).
	ServicesUnknown string `json:"services_unknown,omitempty"`
	// Transactions lists TCC transactions in flight, stuck and recently
	// finished (see txlog.Status); nil from a status that predates it.
	Transactions *txlog.Status `json:"transactions,omitempty"`
	// Messages lists the message consumers with their pending and
	// redelivered counts, the dead-letter count, and the outboxes relayed
	// by the process that answered (see msgstatus.Status); nil from a
	// status that predates it.
	Messages *msgstatus.Status `json:"messages,omitempty"`
	// Locks lists the held locks and elected leaders (see
	// lock.ReadStatus); nil from a status that predates it.
	Locks *lock.Status `json:"locks,omitempty"`
}

// ReadStatus reads the node's status (coord.Node.Status), the registry's
// services, the TCC transaction log (txlog.Log.ReadStatus), the
// messaging status (msgstatus.Read) and the locks (lock.ReadStatus),
// concurrently, each bounded by about a second, so it answers within about
// a second even while leaders are being elected. A part that does not
// answer is reported as unknown in the Status; the only error is
// coord.ErrClosed, on a closed node. It costs a fixed number of JetStream
// requests and creates no consumer: the node's status, one batched direct
// read of the registry, two of the transaction log (the unfinished
// transactions, and the summaries among its latest messages) and one
// stream info for it, one listing of the message consumers per 256 of
// them, one dead-letter stream info, one count of each local outbox, and
// one batched direct read of each lock bucket, so it is cheap to poll; it
// lists at most condkv.MaxListed instances and unfinished transactions,
// and lock.MaxStatusEntries locks and elections.
func ReadStatus(ctx context.Context, node *coord.Node, r *Resolver) (*Status, error) {
	var all map[string][]Registration
	var allErr error
	var txs *txlog.Status
	var msgs *msgstatus.Status
	var locks *lock.Status
	done := make(chan struct{}, 4)
	go func() {
		defer func() { done <- struct{}{} }()
		actx, cancel := context.WithTimeout(ctx, servicesTimeout)
		defer cancel()
		all, allErr = r.all(actx)
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		txs = txlog.Open(node).ReadStatus(ctx, servicesTimeout)
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		msgs = msgstatus.Read(ctx, node, servicesTimeout)
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		locks = lock.ReadStatus(ctx, node, servicesTimeout)
	}()
	st, err := node.Status(ctx)
	for range 4 {
		<-done
	}
	if err != nil {
		return nil, err
	}
	out := &Status{Status: st, Services: []ServiceStatus{}, Transactions: txs, Messages: msgs, Locks: locks}
	if allErr != nil {
		out.ServicesUnknown = allErr.Error()
		if errors.Is(allErr, context.DeadlineExceeded) || errors.Is(allErr, nats.ErrTimeout) {
			out.ServicesUnknown = fmt.Sprintf("no answer within %v", servicesTimeout)
		}
		return out, nil
	}
	for _, name := range slices.Sorted(maps.Keys(all)) {
		out.Services = append(out.Services, ServiceStatus{Name: name, Instances: all[name]})
	}
	return out, nil
}

// StatusHandler serves ReadStatus as JSON: 200 whenever the node is open,
// with the parts that did not answer marked unknown, and 503 with
// {"error": ...} once it is closed. `concord status` reads it.
func StatusHandler(node *coord.Node, r *Resolver) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		st, err := ReadStatus(req.Context(), node, r)
		if err != nil {
			coord.WriteStatusError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
}
