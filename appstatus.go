package concord

import (
	"encoding/json"
	"net/http"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/registry"
	"github.com/concordrpc/concord/rpc"
)

// Status is what an App's admin listener serves at StatusPath: the
// coordination status of its node (registry.ReadStatus: nodes, buckets,
// services, transactions, messages and locks) and the App's own view of
// its calls: the rate limits of its services and the circuit breakers of
// the upstream instances its clients (App.Client) call. A `concord node`
// status has the coordination part only; Limits and Breakers are then
// absent.
type Status struct {
	*registry.Status
	// Limits lists the rate limit of every method the App serves that has
	// one (rpc.Server.LimitStatus), sorted by procedure; empty, not
	// absent, when none has.
	Limits []rpc.LimitStatus `json:"limits"`
	// Breakers lists each upstream instance the App's clients resolved,
	// with the state of its circuit breakers (rpc.Conn.BreakerStatus),
	// sorted by service and instance; empty when no client called yet.
	Breakers []rpc.BreakerStatus `json:"breakers"`
}

// writeAppStatus serves the status of generation g with the App's limits
// and breakers.
func (a *App) writeAppStatus(w http.ResponseWriter, r *http.Request, g *coordGen) {
	st, err := registry.ReadStatus(r.Context(), g.node, g.resolver)
	if err != nil {
		coord.WriteStatusError(w, err)
		return
	}
	out := &Status{Status: st, Limits: a.server.LimitStatus(), Breakers: a.conn.BreakerStatus()}
	if out.Limits == nil {
		out.Limits = []rpc.LimitStatus{}
	}
	if out.Breakers == nil {
		out.Breakers = []rpc.BreakerStatus{}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}
