package tcc

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	"github.com/concordrpc/concord/coord/localstore"
	v1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1"
	"github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1/concordtestv1concord"
	"github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1/concordtestv1connect"
	"github.com/concordrpc/concord/rpc"
)

// reserveService is a TCC participant that records each phase as an
// effect in the barrier's local transaction.
type reserveService struct {
	concordtestv1connect.UnimplementedTestServiceHandler
	tries, confirms, cancels atomic.Int64
	failAfterWrite           atomic.Bool // Reserve writes, then fails with unavailable
}

func (s *reserveService) Echo(_ context.Context, req *v1.EchoRequest) (*v1.EchoResponse, error) {
	return &v1.EchoResponse{Text: req.GetText()}, nil
}

func (s *reserveService) Count(_ context.Context, req *v1.CountRequest, stream concordtestv1connect.TestServiceCountServerStream) error {
	for i := int64(1); i <= min(req.GetN(), 10); i++ {
		if err := stream.Send(&v1.CountResponse{N: i}); err != nil {
			return err
		}
	}
	return nil
}

func (s *reserveService) Reserve(ctx context.Context, req *v1.ReserveRequest) (*v1.ReserveResponse, error) {
	s.tries.Add(1)
	if err := writeEffect(ctx, "reserve/"+req.GetTxId()+"/"+strconv.FormatInt(req.GetAmount(), 10)); err != nil {
		return nil, err
	}
	switch {
	case req.GetAmount() < 0:
		return nil, connect.NewError(connect.CodeFailedPrecondition, "insufficient funds")
	case s.failAfterWrite.Load():
		return nil, connect.NewError(connect.CodeUnavailable, "crashed after the write")
	}
	return &v1.ReserveResponse{}, nil
}

func (s *reserveService) ConfirmReserve(ctx context.Context, req *v1.ReserveRequest) (*v1.ConfirmReserveResponse, error) {
	s.confirms.Add(1)
	return &v1.ConfirmReserveResponse{}, writeEffect(ctx, "confirm/"+req.GetTxId())
}

func (s *reserveService) CancelReserve(ctx context.Context, req *v1.ReserveRequest) (*v1.CancelReserveResponse, error) {
	s.cancels.Add(1)
	return &v1.CancelReserveResponse{}, writeEffect(ctx, "cancel/"+req.GetTxId())
}

// startParticipant serves svc behind a real rpc.Server on 127.0.0.1 with
// the participant interceptor over b, and returns a client.
func startParticipant(t *testing.T, b Barrier, svc *reserveService, policy *rpc.ServicePolicy) concordtestv1connect.TestServiceClient {
	t.Helper()
	return startParticipantWith(t, b, svc, policy)
}

func startParticipantWith(t *testing.T, b Barrier, svc concordtestv1connect.TestServiceHandler, policy *rpc.ServicePolicy, opts ...connecthttp.Option) concordtestv1connect.TestServiceClient {
	t.Helper()
	return concordtestv1connect.NewTestServiceClient(connect.NewClient(serveParticipant(t, b, svc, policy, opts...)))
}

// serveParticipant serves svc as startParticipantWith does and returns a
// transport to it.
func serveParticipant(t *testing.T, b Barrier, svc concordtestv1connect.TestServiceHandler, policy *rpc.ServicePolicy, opts ...connecthttp.Option) connect.Transport {
	t.Helper()
	srv := rpc.NewServer(rpc.WithLogger(slog.New(slog.DiscardHandler)), rpc.WithTCCParticipant(NewInterceptor(b, policy)))
	concordtestv1concord.RegisterTestService(srv, svc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(len(opts) > 0) // h2c for gRPC
	tr := &http.Transport{Protocols: protocols}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("server did not stop within 30s")
		}
	})
	return connecthttp.NewTransport(&http.Client{Transport: tr}, "http://"+ln.Addr().String(), opts...)
}

// TestInvokeFromLoggedBranch drives a branch the way a coordinator that
// restarted would: from the generated branch data alone (procedures and
// request bytes), with no typed client. The barrier sees the decoded
// request, and a repeated phase is replayed.
func TestInvokeFromLoggedBranch(t *testing.T) {
	for _, e := range envs(t) {
		t.Run(e.name, func(t *testing.T) {
			svc := &reserveService{}
			client := connect.NewClient(serveParticipant(t, e.b, svc, concordtestv1concord.TestServicePolicy()))
			branch, err := concordtestv1concord.TestServiceReserveBranch(&v1.ReserveRequest{TxId: "tx-invoke", Amount: 7})
			if err != nil {
				t.Fatal(err)
			}
			k := BranchKey{TxID: "tx-invoke", BranchID: "b1"}
			for _, phase := range []Phase{PhaseTry, PhaseTry, PhaseConfirm, PhaseConfirm} {
				if err := Invoke(t.Context(), client, branch, phase, k); err != nil {
					t.Fatalf("%v: %v", phase, err)
				}
			}
			if svc.tries.Load() != 1 || svc.confirms.Load() != 1 {
				t.Fatalf("handlers ran %d Try and %d Confirm, want 1 each", svc.tries.Load(), svc.confirms.Load())
			}
			if got, want := e.effects(t), []string{"confirm/tx-invoke", "reserve/tx-invoke/7"}; !slices.Equal(got, want) {
				t.Fatalf("effects %v, want %v", got, want)
			}
			// A Cancel after the Confirm is refused by the barrier.
			if err := Invoke(t.Context(), client, branch, PhaseCancel, k); connect.CodeOf(err) != connect.CodeFailedPrecondition {
				t.Fatalf("Cancel after Confirm: %v, want failed_precondition", err)
			}
		})
	}
}

// callCtx returns a context whose call carries the TCC headers of k.
func callCtx(t *testing.T, k BranchKey) context.Context {
	t.Helper()
	ctx, info := connect.NewClientContext(context.Background())
	if err := SetHeaders(info.RequestHeader(), k); err != nil {
		t.Fatal(err)
	}
	return ctx
}

func sameError(a, b error) bool {
	var ea, eb *connect.Error
	return errors.As(a, &ea) && errors.As(b, &eb) && ea.Code() == eb.Code() && ea.Message() == eb.Message()
}

func TestInterceptor(t *testing.T) {
	for _, e := range envs(t) {
		t.Run(e.name, func(t *testing.T) {
			svc := &reserveService{}
			client := startParticipant(t, e.b, svc, concordtestv1concord.TestServicePolicy())

			t.Run("duplicates", func(t *testing.T) {
				req := &v1.ReserveRequest{TxId: "dup", Amount: 5}
				k := key("dup", "b1")
				for i := range 3 {
					if _, err := client.Reserve(callCtx(t, k), req); err != nil {
						t.Fatalf("Reserve #%d: %v", i, err)
					}
				}
				for i := range 3 {
					if _, err := client.ConfirmReserve(callCtx(t, k), req); err != nil {
						t.Fatalf("ConfirmReserve #%d: %v", i, err)
					}
				}
				if svc.tries.Load() != 1 || svc.confirms.Load() != 1 {
					t.Fatalf("handlers ran %d/%d times, want once each", svc.tries.Load(), svc.confirms.Load())
				}
			})

			t.Run("cancel before try", func(t *testing.T) {
				req := &v1.ReserveRequest{TxId: "hang", Amount: 5}
				k := key("hang", "b1")
				before := svc.cancels.Load()
				for range 2 {
					if _, err := client.CancelReserve(callCtx(t, k), req); err != nil {
						t.Fatalf("CancelReserve: %v", err)
					}
				}
				_, err := client.Reserve(callCtx(t, k), req)
				if connect.CodeOf(err) != connect.CodeFailedPrecondition {
					t.Fatalf("Reserve after Cancel: %v, want failed_precondition", err)
				}
				if svc.cancels.Load() != before || slices.Contains(e.effects(t), "reserve/hang/5") {
					t.Fatalf("null compensation ran or the hanging Try reserved: effects %v", e.effects(t))
				}
			})

			t.Run("refusal answered identically", func(t *testing.T) {
				req := &v1.ReserveRequest{TxId: "poor", Amount: -1}
				k := key("poor", "b1")
				before := svc.tries.Load()
				_, first := client.Reserve(callCtx(t, k), req)
				_, second := client.Reserve(callCtx(t, k), req)
				if connect.CodeOf(first) != connect.CodeFailedPrecondition || !sameError(first, second) {
					t.Fatalf("Reserve answers %v then %v", first, second)
				}
				if svc.tries.Load() != before+1 || slices.Contains(e.effects(t), "reserve/poor/-1") {
					t.Fatalf("refused Try ran %d times or left its write", svc.tries.Load()-before)
				}
			})

			t.Run("failure rolls back", func(t *testing.T) {
				req := &v1.ReserveRequest{TxId: "crash", Amount: 7}
				k := key("crash", "b1")
				svc.failAfterWrite.Store(true)
				_, err := client.Reserve(callCtx(t, k), req)
				svc.failAfterWrite.Store(false)
				if connect.CodeOf(err) != connect.CodeUnavailable || slices.Contains(e.effects(t), "reserve/crash/7") {
					t.Fatalf("failed Reserve: %v, effects %v", err, e.effects(t))
				}
				if _, err := client.Reserve(callCtx(t, k), req); err != nil {
					t.Fatalf("retried Reserve: %v", err)
				}
				if !slices.Contains(e.effects(t), "reserve/crash/7") {
					t.Fatal("retried Reserve did not commit")
				}
			})

			t.Run("concurrent duplicates", func(t *testing.T) {
				req := &v1.ReserveRequest{TxId: "race", Amount: 3}
				k := key("race", "b1")
				before := svc.tries.Load()
				var wg sync.WaitGroup
				errs := make([]error, 8)
				for i := range errs {
					wg.Go(func() { _, errs[i] = client.Reserve(callCtx(t, k), req) })
				}
				wg.Wait()
				for _, err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
				if n := svc.tries.Load() - before; n != 1 {
					t.Fatalf("Reserve ran %d times, want 1", n)
				}
			})

			t.Run("bad headers", func(t *testing.T) {
				req := &v1.ReserveRequest{TxId: "bad", Amount: 1}
				before := svc.tries.Load()
				for _, h := range []*connect.Header{
					{},
					header(TxHeader, "t"),
					header(TxHeader, "t", BranchHeader, "a/b"),
					header(TxHeader, "t", TxHeader, "u", BranchHeader, "b"),
				} {
					ctx, info := connect.NewClientContext(context.Background())
					for k, vs := range h.All() {
						info.RequestHeader().SetValues(k, vs)
					}
					_, err := client.Reserve(ctx, req)
					if connect.CodeOf(err) != connect.CodeInvalidArgument {
						t.Fatalf("Reserve with %v: %v, want invalid_argument", h, err)
					}
					_, err = client.CancelReserve(ctx, req)
					if connect.CodeOf(err) != connect.CodeInvalidArgument {
						t.Fatalf("CancelReserve with %v: %v, want invalid_argument", h, err)
					}
				}
				if svc.tries.Load() != before {
					t.Fatal("a call with bad headers reached the handler")
				}
			})

			t.Run("other methods pass", func(t *testing.T) {
				res, err := client.Echo(context.Background(), &v1.EchoRequest{Text: "hi"})
				if err != nil || res.GetText() != "hi" {
					t.Fatalf("Echo = (%v, %v)", res, err)
				}
			})
		})
	}
}

func TestInterceptorRefusesStreaming(t *testing.T) {
	e := openBadger(t)
	policy := concordtestv1concord.TestServicePolicy()
	for i := range policy.Methods {
		if policy.Methods[i].Procedure == concordtestv1connect.TestServiceCountProcedure {
			policy.Methods[i].TCC = &rpc.TCCPolicy{}
		}
	}
	client := startParticipant(t, e.b, &reserveService{}, policy)
	// Without the TCC headers the call is refused too: streaming is
	// checked first. The same method without TCC works (control).
	plain := startParticipant(t, e.b, &reserveService{}, concordtestv1concord.TestServicePolicy())
	if s, err := plain.Count(context.Background(), &v1.CountRequest{N: 1}); err != nil {
		t.Fatal(err)
	} else if res, err := s.Receive(); err != nil || res.GetN() != 1 {
		t.Fatalf("control Count: (%v, %v)", res, err)
	} else {
		s.Close()
	}
	ctx, cancel := context.WithTimeout(callCtx(t, key("s", "b")), 10*time.Second)
	defer cancel()
	stream, err := client.Count(ctx, &v1.CountRequest{N: 1})
	if err == nil {
		defer stream.Close()
		_, err = stream.Receive()
	}
	if connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Fatalf("streaming TCC call: %v, want unimplemented", err)
	}
}

// conflictService's Reserve makes its own first transaction conflict: it
// reads a key, then another writer changes it before the commit, so the
// store reruns the handler, which must receive the same request again.
type conflictService struct {
	reserveService
	store *localstore.Store
	runs  atomic.Int64
	seen  []int64 // amounts received, per run
}

func (s *conflictService) Reserve(ctx context.Context, req *v1.ReserveRequest) (*v1.ReserveResponse, error) {
	s.seen = append(s.seen, req.GetAmount())
	tx := BadgerTx(ctx)
	if _, err := tx.Get([]byte("effect/hot")); err != nil && !errors.Is(err, localstore.ErrNotFound) {
		return nil, err
	}
	if s.runs.Add(1) == 1 {
		if err := s.store.Set([]byte("effect/hot"), []byte("outside")); err != nil {
			return nil, err
		}
	}
	return &v1.ReserveResponse{}, tx.Set([]byte("effect/hot"), []byte(strconv.FormatInt(req.GetAmount(), 10)))
}

func TestInterceptorReplaysRequestOnConflict(t *testing.T) {
	e := openBadger(t)
	svc := &conflictService{store: e.store}
	srvClient := startParticipantWith(t, e.b, svc, concordtestv1concord.TestServicePolicy())
	if _, err := srvClient.Reserve(callCtx(t, key("hot", "b1")), &v1.ReserveRequest{TxId: "hot", Amount: 42}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(svc.seen, []int64{42, 42}) {
		t.Fatalf("runs received %v, want the request twice", svc.seen)
	}
	v, err := e.store.Get([]byte("effect/hot"))
	if err != nil || string(v) != "42" {
		t.Fatalf("hot = (%q, %v), want 42", v, err)
	}
}

// Replayed and skipped calls answer with a message the handler did not
// build; every protocol and codec must carry it.
func TestInterceptorProtocols(t *testing.T) {
	e := openBadger(t)
	for _, tc := range []struct {
		name string
		opt  connecthttp.Option
	}{
		{"connect-json", connecthttp.WithProtoJSON()},
		{"grpc", connecthttp.WithGRPC()},
		{"grpc-web", connecthttp.WithGRPCWeb()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &reserveService{}
			client := startParticipantWith(t, e.b, svc, concordtestv1concord.TestServicePolicy(), tc.opt)
			req := &v1.ReserveRequest{TxId: tc.name, Amount: 1}
			for i := range 2 {
				if _, err := client.Reserve(callCtx(t, key(tc.name, "b1")), req); err != nil {
					t.Fatalf("Reserve #%d: %v", i, err)
				}
				if _, err := client.CancelReserve(callCtx(t, key(tc.name, "b2")), req); err != nil {
					t.Fatalf("null CancelReserve #%d: %v", i, err)
				}
			}
			_, err := client.Reserve(callCtx(t, key(tc.name, "b2")), req)
			if connect.CodeOf(err) != connect.CodeFailedPrecondition {
				t.Fatalf("hanging Reserve: %v", err)
			}
			if svc.tries.Load() != 1 || svc.cancels.Load() != 0 {
				t.Fatalf("handlers ran %d/%d times", svc.tries.Load(), svc.cancels.Load())
			}
		})
	}
}
