package tcctest_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/proto"

	v1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1"
	"github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1/concordtestv1concord"
	"github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1/concordtestv1connect"
	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/tcc/tcctest"
)

const childEnv = "CONCORD_TCCTEST_CHILD"

// naive is a participant without a barrier: every call applies its
// effect, as a handler written without package tcc would.
type naive struct {
	concordtestv1connect.UnimplementedTestServiceHandler
	mu       sync.Mutex
	reserved map[string]int64 // tx_id -> reserved amount
	applied  map[string]int64 // tx_id -> confirmed amount
}

func (s *naive) Reserve(_ context.Context, req *v1.ReserveRequest) (*v1.ReserveResponse, error) {
	if req.GetAmount() < 0 {
		return nil, connect.NewError(connect.CodeFailedPrecondition, "insufficient funds")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserved[req.GetTxId()] += req.GetAmount()
	return &v1.ReserveResponse{}, nil
}

func (s *naive) ConfirmReserve(_ context.Context, req *v1.ReserveRequest) (*v1.ConfirmReserveResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserved[req.GetTxId()] -= req.GetAmount()
	s.applied[req.GetTxId()] += req.GetAmount()
	return &v1.ConfirmReserveResponse{}, nil
}

func (s *naive) CancelReserve(_ context.Context, req *v1.ReserveRequest) (*v1.CancelReserveResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserved[req.GetTxId()] -= req.GetAmount()
	return &v1.CancelReserveResponse{}, nil
}

// TestNaiveChild runs the kit against the naive participant; it runs only
// as TestKitCatchesNaiveParticipant's child, which expects it to fail.
func TestNaiveChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("run by TestKitCatchesNaiveParticipant")
	}
	svc := &naive{reserved: map[string]int64{}, applied: map[string]int64{}}
	srv := rpc.NewServer(rpc.WithLogger(slog.New(slog.DiscardHandler)))
	concordtestv1concord.RegisterTestService(srv, svc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Serve(ctx, ln) }()
	conn := rpc.NewConn("http://" + ln.Addr().String())
	defer conn.Close()
	var n atomic.Int64
	branch := func(amount int64) rpc.TCCBranch {
		b, err := concordtestv1concord.TestServiceReserveBranch(&v1.ReserveRequest{TxId: fmt.Sprint(n.Add(1)), Amount: amount})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tcctest.Run(t, tcctest.Participant{
		Client:  func() *connect.Client { return conn.Client(concordtestv1concord.TestServicePolicy()) },
		Branch:  func(*testing.T) rpc.TCCBranch { return branch(10) },
		Refused: func(*testing.T) rpc.TCCBranch { return branch(-1) },
		State: func(t *testing.T, b rpc.TCCBranch) tcctest.Effect {
			req := new(v1.ReserveRequest)
			if err := proto.Unmarshal(b.Request, req); err != nil {
				t.Fatal(err)
			}
			svc.mu.Lock()
			defer svc.mu.Unlock()
			switch r, a := svc.reserved[req.GetTxId()], svc.applied[req.GetTxId()]; {
			case r == 0 && a == 0:
				return tcctest.EffectNone
			case r == req.GetAmount() && a == 0:
				return tcctest.EffectReserved
			case r == 0 && a == req.GetAmount():
				return tcctest.EffectConfirmed
			}
			return tcctest.EffectBroken
		},
	})
}

// TestKitCatchesNaiveParticipant: the kit fails a participant without a
// barrier in every case that a barrier exists for, and passes none of
// them by accident.
func TestKitCatchesNaiveParticipant(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^TestNaiveChild$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the kit passed a participant without a barrier:\n%s", out)
	}
	for _, c := range []string{"TryTwice", "ConfirmTwice", "CancelTwice", "CancelBeforeTry", "ConfirmWithoutTry", "CancelAfterConfirm", "ConfirmAfterCancel"} {
		if !strings.Contains(string(out), "--- FAIL: TestNaiveChild/"+c) {
			t.Errorf("the kit did not fail %s for a participant without a barrier", c)
		}
	}
	if t.Failed() {
		t.Logf("child output:\n%s", out)
	}
}
