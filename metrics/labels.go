package metrics

import (
	"connectrpc.com/connect/v2"

	"github.com/concordrpc/concord/tcc"
)

// unknownLabel is the value of a label whose input is outside its fixed set.
const unknownLabel = "unknown"

// codeLabel returns the label of a call's code: "ok" or the Connect code
// name ("not_found", ...).
func codeLabel(c connect.Code) string {
	if c == 0 {
		return "ok"
	}
	if c < connect.CodeCanceled || c > connect.CodeUnauthenticated {
		return unknownLabel
	}
	return c.String()
}

// protocolLabel keeps a protocol name within the fixed set.
func protocolLabel(p string) string {
	switch p {
	case connect.ProtocolNameConnect, connect.ProtocolNameGRPC, connect.ProtocolNameGRPCWeb:
		return p
	}
	return unknownLabel
}

// phaseLabel returns "try", "confirm", "cancel" or "unknown".
func phaseLabel(p tcc.Phase) string {
	switch p {
	case tcc.PhaseTry, tcc.PhaseConfirm, tcc.PhaseCancel:
		return p.String()
	}
	return unknownLabel
}

// builtinProcedure reports whether procedure is one an rpc.Server serves
// without a policy: gRPC health and server reflection.
func builtinProcedure(procedure string) bool {
	switch procedure {
	case "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch",
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo":
		return true
	}
	return false
}
