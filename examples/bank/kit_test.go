package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/proto"

	"github.com/concordrpc/concord/examples/bank/bank"
	bankv1 "github.com/concordrpc/concord/examples/bank/gen/bank/v1"
	"github.com/concordrpc/concord/examples/bank/gen/bank/v1/bankv1concord"
	"github.com/concordrpc/concord/internal/pgtest"
	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/tcc"
	"github.com/concordrpc/concord/tcc/tcctest"
)

// runningBank is an accounts App running in this process, on one data
// directory across restarts.
type runningBank struct {
	dir       string
	savingsDB string
	b         *bankApp
	conn      *rpc.Conn
	stop      func()
}

func (r *runningBank) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b, err := newApp(ctx, slog.New(slog.DiscardHandler), config{
		addr: "127.0.0.1:0", data: r.dir, role: "accounts", timeout: tcc.DefaultTimeout, stale: tcc.DefaultStaleAfter, savingsDB: r.savingsDB,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.app.Run(ctx) }()
	actx, acancel := context.WithTimeout(ctx, 20*time.Second)
	addr, err := b.app.Server().Addr(actx)
	acancel()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r.b, r.conn = b, rpc.NewConn("http://"+addr.String())
	r.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		r.conn.Close()
		b.closeDB()
	}
}

// TestParticipantsPassTheKit runs package tcctest's cases against both
// account services, the Badger one and the SQL one (on SQLite, and on
// PostgreSQL when CONCORD_TEST_POSTGRES names one), through a real App,
// restarting it between phases for the crash cases.
func TestParticipantsPassTheKit(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { participantsPassTheKit(t, "") })
	t.Run("postgres", func(t *testing.T) { participantsPassTheKit(t, pgtest.NewSchema(t).DSN(t)) })
}

func participantsPassTheKit(t *testing.T, savingsDB string) {
	r := &runningBank{dir: t.TempDir(), savingsDB: savingsDB}
	r.start(t)
	t.Cleanup(func() { r.stop() })
	var n atomic.Int64
	for _, side := range []struct {
		name   string
		policy *rpc.ServicePolicy
		branch func(*bankv1.ChangeRequest) (rpc.TCCBranch, error)
		open   func() *bank.Accounts
		list   func(context.Context, rpc.ClientConn, *bankv1.ListBalancesRequest) (*bankv1.ListBalancesResponse, error)
	}{
		{"checking", bankv1concord.CheckingServicePolicy(), bankv1concord.CheckingServiceChangeBranch, func() *bank.Accounts { return r.b.checking },
			func(ctx context.Context, c rpc.ClientConn, req *bankv1.ListBalancesRequest) (*bankv1.ListBalancesResponse, error) {
				return bankv1concord.NewCheckingServiceClient(c).ListBalances(ctx, req)
			}},
		{"savings", bankv1concord.SavingsServicePolicy(), bankv1concord.SavingsServiceChangeBranch, func() *bank.Accounts { return r.b.savings },
			func(ctx context.Context, c rpc.ClientConn, req *bankv1.ListBalancesRequest) (*bankv1.ListBalancesResponse, error) {
				return bankv1concord.NewSavingsServiceClient(c).ListBalances(ctx, req)
			}},
	} {
		t.Run(side.name, func(t *testing.T) {
			client := func() *connect.Client { return r.conn.Client(side.policy) }
			// A debit of 10 from a fresh account holding 100.
			debit := func(t *testing.T, amount int64) rpc.TCCBranch {
				account := fmt.Sprintf("kit-%d", n.Add(1))
				if err := side.open().Open(t.Context(), account, 100); err != nil {
					t.Fatal(err)
				}
				b, err := side.branch(&bankv1.ChangeRequest{Account: account, Amount: -amount})
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			tcctest.Run(t, tcctest.Participant{
				Client:  client,
				Branch:  func(t *testing.T) rpc.TCCBranch { return debit(t, 10) },
				Refused: func(t *testing.T) rpc.TCCBranch { return debit(t, 1000) },
				State: func(t *testing.T, b rpc.TCCBranch) tcctest.Effect {
					req := new(bankv1.ChangeRequest)
					if err := proto.Unmarshal(b.Request, req); err != nil {
						t.Fatal(err)
					}
					res, err := side.list(t.Context(), r.conn, &bankv1.ListBalancesRequest{})
					if err != nil {
						t.Fatal(err)
					}
					for _, a := range res.GetAccounts() {
						if a.GetAccount() != req.GetAccount() {
							continue
						}
						switch av, rs := a.GetAvailable(), a.GetReserved(); {
						case av == 100 && rs == 0:
							return tcctest.EffectNone
						case av == 100+req.GetAmount() && rs == -req.GetAmount():
							return tcctest.EffectReserved
						case av == 100+req.GetAmount() && rs == 0:
							return tcctest.EffectConfirmed
						}
						t.Logf("account %s: %+v", req.GetAccount(), a)
						return tcctest.EffectBroken
					}
					t.Fatalf("no account %s", req.GetAccount())
					return tcctest.EffectBroken
				},
				Restart: func(t *testing.T) {
					r.stop()
					r.start(t)
				},
			})
		})
	}
}
