package rpc

import (
	"context"

	"connectrpc.com/connect/v2"
)

// ServiceRegistrar accepts service registrations. *Server implements it, and
// so does Concord's App. Generated Register<Service> functions call it.
type ServiceRegistrar interface {
	// RegisterService registers the methods that register adds to a
	// connect.Server, under the policies of policy.
	RegisterService(policy *ServicePolicy, register func(*connect.Server))
}

// ClientConn builds connect clients for a service. *Conn implements it, and
// so does Concord's App. Generated New<Service>Client functions call it.
type ClientConn interface {
	// Client returns a connect client that reaches the service of policy and
	// applies its client-side policies.
	Client(policy *ServicePolicy) *connect.Client
}

// TCCBranch is one participant's part in a TCC transaction: Try reserves,
// Confirm commits the reservation, Cancel releases it. protoc-gen-concord
// emits a constructor for each Try method that declares (concord.v1.tcc).
// Each phase must be idempotent; a coordinator may call Confirm or Cancel
// more than once, and Cancel without a preceding Try.
type TCCBranch struct {
	// Service is the participant's discovery name.
	Service string
	// Try runs the Try phase.
	Try func(ctx context.Context) error
	// Confirm runs the Confirm phase.
	Confirm func(ctx context.Context) error
	// Cancel runs the Cancel phase.
	Cancel func(ctx context.Context) error
}
