package rpc

import "connectrpc.com/connect/v2"

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

// TCCBranch is one participant's part in a TCC transaction, as data: what
// a coordinator logs before the first Try, so that it, or another
// instance after a crash, can call Confirm or Cancel without the
// participant's Go types. protoc-gen-concord emits a constructor,
// <Service><Try>Branch(req), for each Try method that declares
// (concord.v1.tcc); Try, Confirm and Cancel take the same request message
// (generate checks it). Each phase must be idempotent: a coordinator may
// call Confirm or Cancel more than once, and Cancel without a preceding Try
// (package tcc's barrier makes handlers so).
type TCCBranch struct {
	// Service is the participant's discovery name.
	Service string
	// Try, Confirm and Cancel are the procedures of the three phases, such
	// as "/bank.v1.AccountService/TryDebit".
	Try, Confirm, Cancel string
	// Request is the request message of all three phases in the protobuf
	// binary encoding (deterministic).
	Request []byte
}
