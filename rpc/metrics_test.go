package rpc_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/proto"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/rpc"
)

// TestMetricsHook makes real calls over each protocol to a server with
// WithMetrics and checks the one report each call gives: the procedure,
// the protocol, the code the caller got (a handler's panic included, since
// metrics sit outside recovery), a duration that covers the handler, and
// the sizes of the last messages each way.
func TestMetricsHook(t *testing.T) {
	reports := make(chan rpc.CallReport, 16)
	ts := startServer(t, quietServer(rpc.WithMetrics(func(_ context.Context, r rpc.CallReport) {
		reports <- r
	})), &testGreeter{})
	// The hook runs after the handler, on the server, possibly after the
	// client has its answer: wait for each report, within 10s.
	next := func(t *testing.T) rpc.CallReport {
		t.Helper()
		select {
		case r := <-reports:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("no metrics report within 10s of the call")
			return rpc.CallReport{}
		}
	}
	greet := greeterv1connect.GreeterServiceGreetProcedure
	for _, tc := range []struct {
		name     string
		protocol string
		opts     []rpc.ClientOption
		req      string
		code     connect.Code // 0: success
		minDur   time.Duration
	}{
		{"connect ok", "connect", nil, "Ada", 0, 0},
		{"grpc ok", "grpc", []rpc.ClientOption{rpc.WithProtocol(rpc.ProtocolGRPC)}, "Ada", 0, 0},
		{"grpcweb ok", "grpcweb", []rpc.ClientOption{rpc.WithProtocol(rpc.ProtocolGRPCWeb)}, "Ada", 0, 0},
		// Duration is a lower bound only: load can only make it longer.
		{"slow", "connect", nil, "slow:50ms", 0, 50 * time.Millisecond},
		{"handler error", "connect", nil, "slow:bad", connect.CodeInvalidArgument, 0},
		{"validation error", "connect", nil, "", connect.CodeInvalidArgument, 0},
		{"panic", "connect", nil, "panic", connect.CodeInternal, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := rpc.NewConn(ts.url, tc.opts...)
			defer conn.Close()
			client := greetClient(conn, func(m *rpc.MethodPolicy) { m.Retry = nil })
			req := &greeterv1.GreetRequest{Name: tc.req}
			res, err := client.Greet(t.Context(), req)
			if got := connect.CodeOf(err); (tc.code == 0 && err != nil) || (tc.code != 0 && got != tc.code) {
				t.Fatalf("call: %v, want code %v", err, tc.code)
			}
			r := next(t)
			want := rpc.CallReport{Procedure: greet, Protocol: tc.protocol, Code: tc.code, ReceivedBytes: proto.Size(req)}
			if err == nil {
				want.SentBytes = proto.Size(res)
			}
			got := r
			got.Duration = 0
			if got != want {
				t.Errorf("report %+v, want %+v", got, want)
			}
			if r.Duration <= 0 || r.Duration < tc.minDur {
				t.Errorf("report duration %v, want positive and at least %v", r.Duration, tc.minDur)
			}
		})
	}
	select {
	case r := <-reports:
		t.Errorf("an extra report: %+v", r)
	default:
	}
}

// TestMetricsHookStream checks the report of a server stream: its code
// and the sizes of its request and of its last response.
func TestMetricsHookStream(t *testing.T) {
	reports := make(chan rpc.CallReport, 4)
	ts := startServer(t, quietServer(rpc.WithMetrics(func(_ context.Context, r rpc.CallReport) {
		reports <- r
	})), &testGreeter{})
	conn := rpc.NewConn(ts.url)
	defer conn.Close()
	client := greetClient(conn, func(*rpc.MethodPolicy) {})
	req := &greeterv1.GreetManyRequest{Names: []string{"Ada", "Barbara Liskov"}}
	stream, err := client.GreetMany(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	var last *greeterv1.GreetManyResponse
	for i := 0; i < 10; i++ {
		res, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		last = res
	}
	if err := stream.Close(); err != nil {
		t.Fatal(err)
	}
	if last.GetGreeting() != "Hello, Barbara Liskov!" {
		t.Fatalf("last greeting %q", last.GetGreeting())
	}
	select {
	case r := <-reports:
		want := rpc.CallReport{Procedure: greeterv1connect.GreeterServiceGreetManyProcedure, Protocol: "connect",
			ReceivedBytes: proto.Size(req), SentBytes: proto.Size(last)}
		r.Duration = 0
		if r != want {
			t.Fatalf("report %+v, want %+v", r, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no metrics report within 10s of the stream's end")
	}
}
