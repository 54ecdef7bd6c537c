package tcc

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/concordrpc/concord/rpc"
)

// NewInterceptor returns the participant interceptor for the TCC slot of
// rpc.Server's chain (rpc.WithTCCParticipant): it runs the Try methods of
// services (methods whose policy has TCC set) and the Confirm and Cancel
// procedures they name inside barrier b. Every other call passes through
// untouched, and its TCC headers are ignored, so a caller cannot make the
// barrier record anything through a method that does not declare TCC.
//
// For a TCC call it reads TxHeader and BranchHeader (a missing, repeated
// or malformed one gets invalid_argument), then calls b.Run with the
// handler; the handler reaches the local transaction through BadgerTx or
// SQLTx. The handler's response is held back until the transaction has
// committed, so a caller never sees a success that was rolled back. A call
// the barrier answers without the handler (a duplicate, or a Cancel
// without Try) gets an empty response message of the method's output type:
// see the package doc for why. A streaming TCC method gets unimplemented.
//
// Its place is slot 7 of rpc.Server's chain: after admission and request
// validation (invalid requests never open a transaction), before fencing
// and user interceptors, which therefore run inside the local transaction
// (their errors roll it back).
//
// Pass the same policies that are registered on the server (the generated
// <Service>Policy functions); Confirm and Cancel procedures are found from
// their Try method's policy.
func NewInterceptor(b Barrier, services ...*rpc.ServicePolicy) connect.ServerInterceptor {
	phases := map[string]Phase{}
	for _, s := range services {
		if s == nil {
			continue
		}
		for _, m := range s.Methods {
			if m.TCC == nil {
				continue
			}
			phases[m.Procedure] = PhaseTry
			if m.TCC.ConfirmProcedure != "" {
				phases[m.TCC.ConfirmProcedure] = PhaseConfirm
			}
			if m.TCC.CancelProcedure != "" {
				phases[m.TCC.CancelProcedure] = PhaseCancel
			}
		}
	}
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			phase, ok := phases[spec.Procedure]
			if !ok {
				return next(ctx, spec, stream)
			}
			if spec.StreamType != connect.StreamTypeUnary {
				return connect.NewError(connect.CodeUnimplemented, fmt.Sprintf(
					"tcc: %s is a %s method; TCC participant methods must be unary", spec.Procedure, spec.StreamType))
			}
			var h *connect.Header
			if info, ok := connect.CallInfoForServerContext(ctx); ok {
				h = info.RequestHeader()
			}
			k, err := ParseHeaders(h)
			if err != nil {
				return connect.NewError(connect.CodeInvalidArgument, err.Error()).WithCause(err)
			}
			cs := &callStream{ServerStream: stream}
			out, err := b.Run(ctx, k, phase, func(ctx context.Context) error {
				cs.startAttempt()
				return next(ctx, spec, cs)
			})
			if err != nil {
				return err
			}
			switch out {
			case OutcomeExecuted:
				if cs.res == nil {
					return connect.NewError(connect.CodeInternal, "tcc: handler returned without a response")
				}
				return stream.Send(cs.res)
			case OutcomeReplayed, OutcomeSkipped:
				res, err := emptyOutput(spec)
				if err != nil {
					return connect.NewError(connect.CodeInternal, err.Error())
				}
				return stream.Send(res)
			}
			return connect.NewError(connect.CodeInternal, fmt.Sprintf("tcc: unexpected barrier outcome %d", out))
		}
	}
}

// emptyOutput returns a new, empty response message of spec's method.
func emptyOutput(spec connect.Spec) (proto.Message, error) {
	md, ok := spec.Schema.(protoreflect.MethodDescriptor)
	if !ok {
		return nil, fmt.Errorf("tcc: %s has no protobuf schema to build a response from", spec.Procedure)
	}
	out := md.Output()
	if mt, err := protoregistry.GlobalTypes.FindMessageByName(out.FullName()); err == nil {
		return mt.New().Interface(), nil
	}
	return dynamicpb.NewMessage(out), nil
}

// callStream is the stream a TCC handler sees. It keeps the request so
// that a rerun of the handler (a store retry) receives it again, and holds
// the response back until the barrier has committed.
type callStream struct {
	connect.ServerStream
	req      proto.Message // the request, after the first Receive
	recvErr  error         // the first Receive's error
	received bool          // the first Receive happened
	inRecv   bool          // this attempt received its message
	res      any           // this attempt's response
}

func (s *callStream) startAttempt() {
	s.inRecv = false
	s.res = nil
}

var errResent = errors.New("tcc: unary handler sent a second response")

func (s *callStream) Receive(msg any) error {
	if s.inRecv {
		return s.ServerStream.Receive(msg) // past the one message: the transport's answer
	}
	s.inRecv = true
	if !s.received {
		s.received = true
		s.recvErr = s.ServerStream.Receive(msg)
		if pm, ok := msg.(proto.Message); ok && s.recvErr == nil {
			s.req = proto.Clone(pm)
		}
		return s.recvErr
	}
	if s.recvErr != nil {
		return s.recvErr
	}
	pm, ok := msg.(proto.Message)
	if !ok || s.req == nil {
		return connect.NewError(connect.CodeInternal, "tcc: cannot replay a non-protobuf request to a retried handler")
	}
	proto.Reset(pm)
	proto.Merge(pm, s.req)
	return nil
}

func (s *callStream) Send(msg any) error {
	if s.res != nil {
		return connect.NewError(connect.CodeInternal, errResent.Error())
	}
	s.res = msg
	return nil
}

// SendHeaders is deferred to the held-back Send, which flushes headers.
func (s *callStream) SendHeaders() error { return nil }
