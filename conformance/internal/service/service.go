// Package service implements connectrpc.conformance.v1.ConformanceService,
// the service that the Connect conformance runner calls on a server under
// test.
//
// Every request carries a response definition: response headers and
// trailers, response messages, an error, a delay between messages. The
// service answers as the definition says and echoes what it observed of the
// call (request headers, timeout, request messages, Connect GET query
// parameters) so that the runner can check what the server really saw. The
// rules are those of service.proto and the suite's docs/testing_servers.md.
//
// The service uses only connect's public API: what the runner checks is what
// the server chain in front of it delivered and sent.
package service

import (
	"context"
	"errors"
	"io"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/types/known/anypb"

	v1 "github.com/concordrpc/concord/conformance/internal/gen/connectrpc/conformance/v1"
	"github.com/concordrpc/concord/conformance/internal/gen/connectrpc/conformance/v1/conformancev1connect"
)

// Service implements the conformance service. The zero value is ready to use
// and safe for concurrent use.
type Service struct{}

var _ conformancev1connect.ConformanceServiceHandler = Service{}

// Unary answers as the request's response definition says.
func (Service) Unary(ctx context.Context, req *v1.UnaryRequest) (*v1.UnaryResponse, error) {
	call := observe(ctx)
	msg, err := asAny(req)
	if err != nil {
		return nil, err
	}
	payload, err := respondOnce(call, req.GetResponseDefinition(), []*anypb.Any{msg})
	if err != nil {
		return nil, err
	}
	return &v1.UnaryResponse{Payload: payload}, nil
}

// IdempotentUnary is Unary for a method without side effects, which Connect
// clients may call with HTTP GET; the payload then also echoes the query.
func (Service) IdempotentUnary(ctx context.Context, req *v1.IdempotentUnaryRequest) (*v1.IdempotentUnaryResponse, error) {
	call := observe(ctx)
	msg, err := asAny(req)
	if err != nil {
		return nil, err
	}
	payload, err := respondOnce(call, req.GetResponseDefinition(), []*anypb.Any{msg})
	if err != nil {
		return nil, err
	}
	return &v1.IdempotentUnaryResponse{Payload: payload}, nil
}

// ClientStream reads every request, then answers as the first request's
// response definition says, echoing all requests in order.
func (Service) ClientStream(ctx context.Context, stream conformancev1connect.ConformanceServiceClientStreamServerStream) (*v1.ClientStreamResponse, error) {
	call := observe(ctx)
	var (
		def      *v1.UnaryResponseDefinition
		requests []*anypb.Any
	)
	for {
		req, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(requests) == 0 {
			def = req.GetResponseDefinition()
		}
		msg, err := asAny(req)
		if err != nil {
			return nil, err
		}
		requests = append(requests, msg)
	}
	payload, err := respondOnce(call, def, requests)
	if err != nil {
		return nil, err
	}
	return &v1.ClientStreamResponse{Payload: payload}, nil
}

// ServerStream sends the response messages of the request's definition,
// waiting the definition's delay before each, then fails with its error if
// it has one. Headers go out before the first delay, so that the client sees
// them at once.
func (Service) ServerStream(ctx context.Context, req *v1.ServerStreamRequest, stream conformancev1connect.ConformanceServiceServerStreamServerStream) error {
	call := observe(ctx)
	msg, err := asAny(req)
	if err != nil {
		return err
	}
	def := req.GetResponseDefinition()
	if err := checkStreamDefinition(def); err != nil {
		return err
	}
	call.setMetadata(def.GetResponseHeaders(), def.GetResponseTrailers())
	data := def.GetResponseData()
	if len(data) > 0 {
		if err := stream.SendHeaders(); err != nil {
			return err
		}
	}
	for i, d := range data {
		res := &v1.ServerStreamResponse{Payload: &v1.ConformancePayload{Data: d}}
		if i == 0 {
			res.Payload.RequestInfo = call.requestInfo([]*anypb.Any{msg})
		}
		sleep(def.GetResponseDelayMs())
		if err := stream.Send(res); err != nil {
			return err
		}
	}
	return streamError(def, call, len(data), []*anypb.Any{msg})
}

// BidiStream serves both bidi shapes, as the first request's full_duplex
// says. Full duplex: one response after each request, echoing the requests
// received since the previous response; the stream ends, with the
// definition's error if any, on the first request that finds no response
// left to send. Half duplex: read every request first, then send all
// responses, the first one echoing all requests.
func (Service) BidiStream(ctx context.Context, stream conformancev1connect.ConformanceServiceBidiStreamServerStream) error {
	call := observe(ctx)
	var (
		def        *v1.StreamResponseDefinition
		fullDuplex bool
		received   int
		sent       int
		pending    []*anypb.Any // requests not yet echoed
	)
	for {
		req, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		msg, err := asAny(req)
		if err != nil {
			return err
		}
		pending = append(pending, msg)
		received++
		if received == 1 {
			def, fullDuplex = req.GetResponseDefinition(), req.GetFullDuplex()
			if err := checkStreamDefinition(def); err != nil {
				return err
			}
			call.setMetadata(def.GetResponseHeaders(), def.GetResponseTrailers())
			// A half-duplex client is still uploading: answer nothing,
			// headers included, until it is done.
			if fullDuplex && len(def.GetResponseData()) > 0 {
				if err := stream.SendHeaders(); err != nil {
					return err
				}
			}
		}
		if !fullDuplex {
			continue
		}
		if sent == len(def.GetResponseData()) {
			break
		}
		if err := sendBidi(stream, call, def, sent, pending); err != nil {
			return err
		}
		sent++
		pending = nil
	}
	data := def.GetResponseData()
	if !fullDuplex && len(data) > 0 {
		if err := stream.SendHeaders(); err != nil {
			return err
		}
	}
	// Half duplex sends everything here; full duplex sends what is left
	// when the client stopped early.
	for ; sent < len(data); sent++ {
		if err := sendBidi(stream, call, def, sent, pending); err != nil {
			return err
		}
		pending = nil
	}
	return streamError(def, call, sent, pending)
}

// sendBidi sends response number n of def after its delay. The first
// response echoes all request properties; later ones only the requests
// received since the previous response (none, in half duplex).
func sendBidi(stream conformancev1connect.ConformanceServiceBidiStreamServerStream, call *observed, def *v1.StreamResponseDefinition, n int, requests []*anypb.Any) error {
	res := &v1.BidiStreamResponse{Payload: &v1.ConformancePayload{Data: def.GetResponseData()[n]}}
	switch {
	case n == 0:
		res.Payload.RequestInfo = call.requestInfo(requests)
	case len(requests) > 0:
		res.Payload.RequestInfo = &v1.ConformancePayload_RequestInfo{Requests: requests}
	}
	sleep(def.GetResponseDelayMs())
	return stream.Send(res)
}

// Unimplemented always fails with unimplemented: the suite checks that a
// caller of a method the server declines to serve sees that code.
func (Service) Unimplemented(context.Context, *v1.UnimplementedRequest) (*v1.UnimplementedResponse, error) {
	return nil, connect.NewError(connect.CodeUnimplemented, "connectrpc.conformance.v1.ConformanceService.Unimplemented is not implemented")
}

// respondOnce answers a call with a single response (unary or client
// stream) as def says, given the request messages received. A nil def means
// a payload with the request info only, and no metadata.
func respondOnce(call *observed, def *v1.UnaryResponseDefinition, requests []*anypb.Any) (*v1.ConformancePayload, error) {
	info := call.requestInfo(requests)
	if def == nil {
		return &v1.ConformancePayload{RequestInfo: info}, nil
	}
	if def.GetRawResponse() != nil {
		return nil, errRawResponse
	}
	call.setMetadata(def.GetResponseHeaders(), def.GetResponseTrailers())
	sleep(def.GetResponseDelayMs())
	if e := def.GetError(); e != nil {
		return nil, toConnectError(e, info)
	}
	return &v1.ConformancePayload{Data: def.GetResponseData(), RequestInfo: info}, nil
}

// streamError returns the error that ends a stream as def says, or nil. When
// no response was sent, the error carries the request info in its details,
// since no payload could.
func streamError(def *v1.StreamResponseDefinition, call *observed, sent int, requests []*anypb.Any) error {
	e := def.GetError()
	if e == nil {
		return nil
	}
	var info *v1.ConformancePayload_RequestInfo
	if sent == 0 {
		info = call.requestInfo(requests)
	}
	return toConnectError(e, info)
}

var errRawResponse = connect.NewError(connect.CodeInvalidArgument, "raw_response is for the reference server only; a server under test does not serve it")

func checkStreamDefinition(def *v1.StreamResponseDefinition) error {
	if def.GetRawResponse() != nil {
		return errRawResponse
	}
	return nil
}
