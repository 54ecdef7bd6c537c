package testpb_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	concordtestv1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1"
	"github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1/concordtestv1concord"
	"github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1/concordtestv1connect"
	"github.com/concordrpc/concord/rpc"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestPolicyTable checks the generated policy table against the options in
// test.proto, field by field.
func TestPolicyTable(t *testing.T) {
	t.Parallel()
	if diff := cmp.Diff(wantPolicy(), concordtestv1concord.TestServicePolicy()); diff != "" {
		t.Errorf("TestServicePolicy() (-want +got):\n%s", diff)
	}
	if got := concordtestv1concord.TestServiceDiscoveryName; got != "concord-test" {
		t.Errorf("TestServiceDiscoveryName = %q, want %q", got, "concord-test")
	}
	a, b := concordtestv1concord.TestServicePolicy(), concordtestv1concord.TestServicePolicy()
	a.Methods[0].Retry.RetryableCodes[0] = connect.CodeInternal
	if b.Methods[0].Retry.RetryableCodes[0] != connect.CodeUnavailable {
		t.Error("TestServicePolicy returns tables that share memory; want a new table per call")
	}
}

// TestCallEveryMethod serves the generated service over HTTP and calls
// every method through the generated client, with each wire protocol.
func TestCallEveryMethod(t *testing.T) {
	t.Parallel()
	svc := newService()
	srv := rpc.NewServer(rpc.WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil))))
	concordtestv1concord.RegisterTestService(srv, svc)
	baseURL := serve(t, srv)

	// Registration hands the generated table to the server.
	for _, want := range wantPolicy().Methods {
		if diff := cmp.Diff(&want, srv.Policy(want.Procedure)); diff != "" {
			t.Errorf("server policy of %s (-want +got):\n%s", want.Procedure, diff)
		}
	}

	for _, p := range []struct {
		name     string
		protocol rpc.Protocol
	}{
		{"connect", rpc.ProtocolConnect},
		{"grpc", rpc.ProtocolGRPC},
		{"grpcweb", rpc.ProtocolGRPCWeb},
	} {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			conn := rpc.NewConn(baseURL, rpc.WithProtocol(p.protocol))
			t.Cleanup(func() { _ = conn.Close() })
			client := concordtestv1concord.NewTestServiceClient(conn)
			testCalls(t, conn, client, svc, p.name)
		})
	}
}

func testCalls(t *testing.T, conn rpc.ClientConn, client concordtestv1connect.TestServiceClient, svc *service, txPrefix string) {
	t.Run("unary", func(t *testing.T) {
		res, err := client.Echo(t.Context(), &concordtestv1.EchoRequest{Text: "hello"})
		if err != nil {
			t.Fatal(err)
		}
		if res.GetText() != "hello" {
			t.Errorf("Echo = %q, want %q", res.GetText(), "hello")
		}
		// The method's timeout bounds the call on the server.
		if left := svc.deadlineLeft("Echo"); left <= 0 || left > 2*time.Second {
			t.Errorf("Echo handler had %v left before its deadline, want (0, 2s]", left)
		}
	})

	t.Run("validation", func(t *testing.T) {
		_, err := client.Echo(t.Context(), &concordtestv1.EchoRequest{Text: ""})
		if code := connect.CodeOf(err); code != connect.CodeInvalidArgument {
			t.Fatalf("Echo with empty text: code %v (%v), want %v", code, err, connect.CodeInvalidArgument)
		}
		var cerr *connect.Error
		if !errors.As(err, &cerr) || len(cerr.Details()) != 1 {
			t.Fatalf("Echo with empty text: want one error detail, got %v", err)
		}
		msg, derr := connectproto.UnmarshalErrorDetail(cerr.Details()[0])
		if derr != nil {
			t.Fatal(derr)
		}
		violations, ok := msg.(*validate.Violations)
		if !ok || len(violations.GetViolations()) != 1 || violations.GetViolations()[0].GetRuleId() != "string.min_len" {
			t.Errorf("Echo with empty text: detail %v, want one string.min_len violation", msg)
		}
	})

	t.Run("client stream", func(t *testing.T) {
		stream, err := client.Sum(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for n := range int64(10) {
			if err := stream.Send(&concordtestv1.SumRequest{N: n + 1}); err != nil {
				t.Fatal(err)
			}
		}
		res, err := stream.CloseAndReceive()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetTotal() != 55 {
			t.Errorf("Sum of 1..10 = %d, want 55", res.GetTotal())
		}
		if left := svc.deadlineLeft("Sum"); left <= 0 || left > 3*time.Second {
			t.Errorf("Sum handler had %v left before its deadline, want (0, 3s]", left)
		}
	})

	t.Run("server stream", func(t *testing.T) {
		stream, err := client.Count(t.Context(), &concordtestv1.CountRequest{N: 5})
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		var got []int64
		for {
			res, err := stream.Receive()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, res.GetN())
		}
		if diff := cmp.Diff([]int64{1, 2, 3, 4, 5}, got); diff != "" {
			t.Errorf("Count(5) (-want +got):\n%s", diff)
		}
	})

	t.Run("bidi stream", func(t *testing.T) {
		stream, err := client.Chat(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		// Send and receive in lockstep: each answer arrives before the next
		// request leaves, so the stream is truly bidirectional.
		for _, text := range []string{"one", "two", "three"} {
			if err := stream.Send(&concordtestv1.ChatRequest{Text: text}); err != nil {
				t.Fatal(err)
			}
			res, err := stream.Receive()
			if err != nil {
				t.Fatal(err)
			}
			if want := "re: " + text; res.GetText() != want {
				t.Errorf("Chat answered %q, want %q", res.GetText(), want)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Receive(); !errors.Is(err, io.EOF) {
			t.Errorf("Chat after CloseSend: %v, want io.EOF", err)
		}
	})

	t.Run("tcc branch", func(t *testing.T) {
		// The branch is data a coordinator can log: the three procedures
		// and the request's bytes, enough to make each call after a crash.
		req := &concordtestv1.ReserveRequest{TxId: txPrefix + "-tx", Amount: 42}
		branch, err := concordtestv1concord.TestServiceReserveBranch(req)
		if err != nil {
			t.Fatal(err)
		}
		want := rpc.TCCBranch{
			Service: concordtestv1concord.TestServiceDiscoveryName,
			Try:     "/concordtest.v1.TestService/Reserve",
			Confirm: "/concordtest.v1.TestService/ConfirmReserve",
			Cancel:  "/concordtest.v1.TestService/CancelReserve",
		}
		got := branch
		got.Request = nil
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("branch (-want +got):\n%s", diff)
		}
		var decoded concordtestv1.ReserveRequest
		if err := proto.Unmarshal(branch.Request, &decoded); err != nil || !proto.Equal(&decoded, req) {
			t.Errorf("branch.Request decodes to %v (%v), want %v", &decoded, err, req)
		}
		// Each phase's procedure answers the logged request on the server.
		for _, procedure := range []string{branch.Try, branch.Confirm, branch.Cancel} {
			var res concordtestv1.ReserveResponse
			spec := connect.Spec{Procedure: procedure, StreamType: connect.StreamTypeUnary}
			if err := conn.Client(concordtestv1concord.TestServicePolicy()).CallUnary(t.Context(), spec, &decoded, &res); err != nil {
				t.Fatalf("%s: %v", procedure, err)
			}
		}
		wantCalls := []string{"Reserve 42", "ConfirmReserve 42", "CancelReserve 42"}
		if diff := cmp.Diff(wantCalls, svc.tccCalls(req.GetTxId())); diff != "" {
			t.Errorf("calls the server saw for %s (-want +got):\n%s", req.GetTxId(), diff)
		}
	})
}

// wantPolicy is the policy table test.proto declares.
func wantPolicy() *rpc.ServicePolicy {
	return &rpc.ServicePolicy{
		Name:          "concordtest.v1.TestService",
		DiscoveryName: "concord-test",
		Methods: []rpc.MethodPolicy{
			{
				Procedure:   "/concordtest.v1.TestService/Echo",
				StreamType:  connect.StreamTypeUnary,
				Idempotency: connect.IdempotencyIdempotent,
				Timeout:     2 * time.Second,
				Retry: &rpc.RetryPolicy{
					MaxAttempts:    4,
					InitialBackoff: 10 * time.Millisecond,
					MaxBackoff:     250 * time.Millisecond,
					Multiplier:     1.5,
					RetryableCodes: []connect.Code{connect.CodeUnavailable, connect.CodeResourceExhausted},
				},
				CircuitBreaker: &rpc.BreakerPolicy{
					FailureRatio:   0.25,
					MinRequests:    10,
					Window:         30 * time.Second,
					OpenFor:        time.Minute,
					HalfOpenProbes: 2,
				},
			},
			{
				Procedure:   "/concordtest.v1.TestService/Sum",
				StreamType:  connect.StreamTypeClient,
				Idempotency: connect.IdempotencyUnknown,
				Timeout:     3 * time.Second,
			},
			{
				Procedure:   "/concordtest.v1.TestService/Count",
				StreamType:  connect.StreamTypeServer,
				Idempotency: connect.IdempotencyUnknown,
				Timeout:     10 * time.Second, // the service default
				RateLimit: &rpc.RateLimitPolicy{
					Algorithm: rpc.TokenBucket,
					Rate:      100,
					Per:       time.Second,
					Burst:     20,
					Scope:     rpc.ScopeLocal,
					Key:       rpc.KeyPeer,
				},
			},
			{
				Procedure:   "/concordtest.v1.TestService/Chat",
				StreamType:  connect.StreamTypeBidi,
				Idempotency: connect.IdempotencyUnknown,
				Timeout:     time.Minute,
				RateLimit: &rpc.RateLimitPolicy{
					Algorithm: rpc.SlidingWindow,
					Rate:      50,
					Per:       10 * time.Second,
					Scope:     rpc.ScopeCluster,
					Key:       rpc.KeyHeader,
					Header:    "x-tenant",
				},
			},
			{
				Procedure:   "/concordtest.v1.TestService/Reserve",
				StreamType:  connect.StreamTypeUnary,
				Idempotency: connect.IdempotencyUnknown,
				Timeout:     10 * time.Second,
				TCC: &rpc.TCCPolicy{
					ConfirmProcedure: "/concordtest.v1.TestService/ConfirmReserve",
					CancelProcedure:  "/concordtest.v1.TestService/CancelReserve",
				},
			},
			{
				Procedure:   "/concordtest.v1.TestService/ConfirmReserve",
				StreamType:  connect.StreamTypeUnary,
				Idempotency: connect.IdempotencyUnknown,
				Timeout:     10 * time.Second,
			},
			{
				Procedure:   "/concordtest.v1.TestService/CancelReserve",
				StreamType:  connect.StreamTypeUnary,
				Idempotency: connect.IdempotencyUnknown,
				Timeout:     10 * time.Second,
			},
		},
	}
}

// serve serves srv on a fresh port of 127.0.0.1 until the test ends, and
// returns its base URL. Cleanup stops the server and waits for Serve.
func serve(t *testing.T, srv *rpc.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// service implements TestService and records what its handlers saw.
type service struct {
	mu        sync.Mutex
	deadlines map[string]time.Duration // method → time left at its last call
	tcc       map[string][]string      // tx ID → "Method amount", in call order
}

var _ concordtestv1connect.TestServiceHandler = (*service)(nil)

func newService() *service {
	return &service{deadlines: map[string]time.Duration{}, tcc: map[string][]string{}}
}

func (s *service) sawDeadline(ctx context.Context, method string) {
	left := time.Duration(-1)
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadlines[method] = left
}

// deadlineLeft returns how long the last call of method had before its
// deadline, or -1 if it had none.
func (s *service) deadlineLeft(method string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadlines[method]
}

func (s *service) tccCall(method string, req *concordtestv1.ReserveRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tcc[req.GetTxId()] = append(s.tcc[req.GetTxId()], fmt.Sprintf("%s %d", method, req.GetAmount()))
}

func (s *service) tccCalls(txID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tcc[txID]
}

func (s *service) Echo(ctx context.Context, req *concordtestv1.EchoRequest) (*concordtestv1.EchoResponse, error) {
	s.sawDeadline(ctx, "Echo")
	return &concordtestv1.EchoResponse{Text: req.GetText()}, nil
}

func (s *service) Sum(ctx context.Context, stream concordtestv1connect.TestServiceSumServerStream) (*concordtestv1.SumResponse, error) {
	s.sawDeadline(ctx, "Sum")
	var total int64
	for {
		req, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return &concordtestv1.SumResponse{Total: total}, nil
		}
		if err != nil {
			return nil, err
		}
		total += req.GetN()
	}
}

func (s *service) Count(_ context.Context, req *concordtestv1.CountRequest, stream concordtestv1connect.TestServiceCountServerStream) error {
	for n := range req.GetN() {
		if err := stream.Send(&concordtestv1.CountResponse{N: n + 1}); err != nil {
			return err
		}
	}
	return nil
}

func (s *service) Chat(_ context.Context, stream concordtestv1connect.TestServiceChatServerStream) error {
	for {
		req, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&concordtestv1.ChatResponse{Text: "re: " + req.GetText()}); err != nil {
			return err
		}
	}
}

func (s *service) Reserve(_ context.Context, req *concordtestv1.ReserveRequest) (*concordtestv1.ReserveResponse, error) {
	s.tccCall("Reserve", req)
	return &concordtestv1.ReserveResponse{}, nil
}

func (s *service) ConfirmReserve(_ context.Context, req *concordtestv1.ReserveRequest) (*concordtestv1.ConfirmReserveResponse, error) {
	s.tccCall("ConfirmReserve", req)
	return &concordtestv1.ConfirmReserveResponse{}, nil
}

func (s *service) CancelReserve(_ context.Context, req *concordtestv1.ReserveRequest) (*concordtestv1.CancelReserveResponse, error) {
	s.tccCall("CancelReserve", req)
	return &concordtestv1.CancelReserveResponse{}, nil
}
