package tcc

import (
	"context"
	"fmt"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/concordrpc/concord/rpc"
)

// Invoke makes one phase's call of branch, as a coordinator does, with no
// knowledge of the participant's Go types: it sends branch.Request, the
// logged protobuf encoding, to the phase's procedure with the headers of
// key, and discards the response. client must reach the participant's
// service (for an App, app.Client(&rpc.ServicePolicy{DiscoveryName:
// branch.Service})) and use the binary protobuf codec, Concord's default:
// the request travels as the unknown fields of an empty message, which a
// JSON codec would drop.
//
// Invoke returns the call's error: the participant's answer (for example
// failed_precondition for a Try after Cancel) or the transport's.
func Invoke(ctx context.Context, client *connect.Client, branch rpc.TCCBranch, phase Phase, key BranchKey) error {
	var procedure string
	switch phase {
	case PhaseTry:
		procedure = branch.Try
	case PhaseConfirm:
		procedure = branch.Confirm
	case PhaseCancel:
		procedure = branch.Cancel
	}
	if procedure == "" {
		return fmt.Errorf("tcc: branch of %q has no procedure for phase %v", branch.Service, phase)
	}
	req := &emptypb.Empty{}
	if err := proto.Unmarshal(branch.Request, req); err != nil {
		return fmt.Errorf("tcc: branch request of %s: %w", procedure, err)
	}
	ctx, info := connect.NewClientContext(ctx)
	if err := SetHeaders(info.RequestHeader(), key); err != nil {
		return err
	}
	spec := connect.Spec{Procedure: procedure, StreamType: connect.StreamTypeUnary}
	return client.CallUnary(ctx, spec, req, &emptypb.Empty{})
}
