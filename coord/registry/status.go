package registry

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"

	"github.com/concordrpc/concord/coord"
)

// ServiceStatus lists one service's registered instances.
type ServiceStatus struct {
	// Name is the discovery name.
	Name string `json:"name"`
	// Instances are the registrations, ready or not.
	Instances []Registration `json:"instances"`
}

// Status is the coordination status with the registry's services.
type Status struct {
	*coord.Status
	// Services lists every registered service.
	Services []ServiceStatus `json:"services"`
}

// ReadStatus reads the node's status and the registry's services. It
// costs a fixed number of JetStream requests (the node's status and one
// batched read of the registry) and creates no consumer, so it is cheap to
// poll; it lists at most condkv.MaxListed instances.
func ReadStatus(ctx context.Context, node *coord.Node, r *Resolver) (*Status, error) {
	st, err := node.Status(ctx)
	if err != nil {
		return nil, err
	}
	all, err := r.all(ctx)
	if err != nil {
		return nil, err
	}
	out := &Status{Status: st, Services: []ServiceStatus{}}
	for _, name := range slices.Sorted(maps.Keys(all)) {
		out.Services = append(out.Services, ServiceStatus{Name: name, Instances: all[name]})
	}
	return out, nil
}

// StatusHandler serves ReadStatus as JSON (503 with {"error": ...} when it
// fails); `concord status` reads it.
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
