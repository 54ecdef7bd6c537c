package service

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	v1 "github.com/concordrpc/concord/conformance/internal/gen/connectrpc/conformance/v1"
)

// observed is what the handler saw of a call when it started: the request
// metadata, the time left before the deadline, and the Connect GET query.
// It also writes the response metadata.
type observed struct {
	info    *connect.CallInfo
	headers []*v1.Header
	timeout *int64 // milliseconds, nil without a deadline
	query   url.Values
}

// observe records the call's request side. It runs first in each handler so
// that the echoed timeout is the one the request carried, not what is left
// after the response delays.
func observe(ctx context.Context) *observed {
	info, ok := connect.CallInfoForServerContext(ctx)
	if !ok {
		// Handlers registered on a connect.Server always have one; keep the
		// zero value usable rather than crash on a misuse.
		info = new(connect.CallInfo)
	}
	o := &observed{info: info}
	for name, values := range info.RequestHeader().All() {
		o.headers = append(o.headers, &v1.Header{Name: name, Value: values})
	}
	if deadline, ok := ctx.Deadline(); ok {
		o.timeout = proto.Int64(time.Until(deadline).Milliseconds())
	}
	if httpInfo, ok := connecthttp.ServerInfoForContext(ctx); ok {
		o.query = httpInfo.HTTPGetQueryParams()
	}
	return o
}

// requestInfo describes the call with the given request messages.
func (o *observed) requestInfo(requests []*anypb.Any) *v1.ConformancePayload_RequestInfo {
	ri := &v1.ConformancePayload_RequestInfo{
		RequestHeaders: o.headers,
		TimeoutMs:      o.timeout,
		Requests:       requests,
	}
	// HTTPGetQueryParams is nil unless the call came as a Connect GET.
	if o.query != nil {
		ri.ConnectGetInfo = &v1.ConformancePayload_ConnectGetInfo{QueryParams: toHeaders(o.query)}
	}
	return ri
}

// setMetadata adds the response headers and trailers that a response
// definition asks for, keeping repeated values in order.
func (o *observed) setMetadata(headers, trailers []*v1.Header) {
	for _, h := range headers {
		for _, v := range h.GetValue() {
			o.info.ResponseHeader().Add(h.GetName(), v)
		}
	}
	for _, h := range trailers {
		for _, v := range h.GetValue() {
			o.info.ResponseTrailer().Add(h.GetName(), v)
		}
	}
}

func toHeaders(values url.Values) []*v1.Header {
	headers := make([]*v1.Header, 0, len(values))
	for name, vs := range values {
		headers = append(headers, &v1.Header{Name: name, Value: vs})
	}
	return headers
}

// sleep waits the response delay of a definition. Like the suite's reference
// server it does not stop early when the call's context ends: in the
// Timeouts cases the client's own deadline must end the call, and a server
// that answered deadline_exceeded at that same instant would race the
// reference client, which then sometimes checks a half-read error body. What
// a handler sends after its caller has gone is dropped.
func sleep(ms uint32) {
	time.Sleep(time.Duration(ms) * time.Millisecond)
}

// asAny packs a request message for echoing.
func asAny(msg proto.Message) (*anypb.Any, error) {
	a, err := anypb.New(msg)
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, "cannot pack the request for echoing").WithCause(err)
	}
	return a, nil
}

// toConnectError builds the error that a response definition asks for: its
// code, message and details, then info as one more detail when info is not
// nil.
func toConnectError(def *v1.Error, info *v1.ConformancePayload_RequestInfo) error {
	code := connect.Code(def.GetCode())
	if code < connect.CodeCanceled || code > connect.CodeUnauthenticated {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Sprintf("response definition asks for error code %d, which is not a valid code", def.GetCode()))
	}
	cerr := connect.NewError(code, def.GetMessage())
	details := def.GetDetails()
	if info != nil {
		packed, err := anypb.New(info)
		if err != nil {
			return connect.NewError(connect.CodeInternal, "cannot pack the request info").WithCause(err)
		}
		details = append(details[:len(details):len(details)], packed)
	}
	for _, d := range details {
		detail, err := connectproto.NewErrorDetail(d)
		if err != nil {
			return connect.NewError(connect.CodeInternal, "cannot build an error detail").WithCause(err)
		}
		cerr = cerr.WithDetail(detail)
	}
	return cerr
}
