package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/registry"
	"github.com/concordrpc/concord/coord/txlog"
	bankv1 "github.com/concordrpc/concord/examples/bank/gen/bank/v1"
	"github.com/concordrpc/concord/examples/bank/gen/bank/v1/bankv1concord"
	"github.com/concordrpc/concord/internal/clustertest"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/internal/pgtest"
	"github.com/concordrpc/concord/rpc"
)

// Timeouts the fault test gives the bank processes, and the bound it
// states for every transaction to end after the faults stopped: the
// transaction timeout, recovery's stale period, an election's TTL (a
// killed recovery leader) and a registry lease (a killed participant
// re-registers under its old ID once its lease lapsed), with margin.
const (
	faultTxTimeout = 3 * time.Second
	faultStale     = 2 * time.Second
	settleWithin   = 45 * time.Second
)

// seedTotal is the money the seed accounts hold.
func seedTotal() int64 {
	var sum int64
	for _, s := range seed {
		sum += s.cents
	}
	return sum
}

var addrRE = regexp.MustCompile(`msg="rpc: serving" addr=(127\.0\.0\.1:\d+)`)

// bankProc is one bank process in client mode against the test's node.
type bankProc struct {
	bin, nats, dir, role string
	savingsDB            string  // -savings-db
	chaos                float64 // -chaos
	cmd                  *exec.Cmd
	logs                 *strings.Builder
	mu                   sync.Mutex
}

func (p *bankProc) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(p.bin, "-addr", "127.0.0.1:0", "-admin", "", "-data", p.dir, "-role", p.role, "-nats", p.nats,
		"-tcc-timeout", faultTxTimeout.String(), "-tcc-stale", faultStale.String(),
		"-savings-db", p.savingsDB, "-chaos", fmt.Sprint(p.chaos))
	cmd.Env = append(os.Environ(), "CONCORD_NATS_USER="+nodetest.User, "CONCORD_NATS_PASSWORD="+nodetest.Password)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan struct{}, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if addrRE.MatchString(sc.Text()) {
				select {
				case found <- struct{}{}:
				default:
				}
			}
		}
	}()
	select {
	case <-found:
	case <-time.After(30 * time.Second):
		t.Fatalf("bank %s did not start", p.role)
	}
	p.cmd = cmd
}

func (p *bankProc) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
}

// TestTransfersSurviveKills runs an accounts process and two transfer
// (coordinator) processes on a shared node, and drives concurrent
// transfers between a few accounts, many of them refused for
// insufficient funds, while it kill -9s each coordinator and the
// participant process at random moments and restarts them on their data
// directories, and the coordinators' calls to participants are dropped
// (request or response) or duplicated at random. Then it asserts the
// invariants: every transaction ended within settleWithin, money is
// conserved (available + reserved over every account is the seed),
// nothing is left reserved or incoming, and no balance is negative. The
// savings service runs on SQLite, and on PostgreSQL when
// CONCORD_TEST_POSTGRES names one.
func TestTransfersSurviveKills(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills processes")
	}
	bin := filepath.Join(t.TempDir(), "bank")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Run("sqlite", func(t *testing.T) { transfersSurviveKills(t, bin, "", nil) })
	t.Run("postgres", func(t *testing.T) { transfersSurviveKills(t, bin, pgtest.NewSchema(t).DSN(t), nil) })
	// On a three-node cluster, one node is also killed with SIGKILL
	// during the load (and restarted later): every stream is R3, so the
	// log and the registry go on with two nodes.
	t.Run("cluster", func(t *testing.T) {
		c := clustertest.New(t, 3)
		c.Start(t)
		transfersSurviveKills(t, bin, "", c)
	})
}

// transfersSurviveKills runs the load and faults on one listening node in
// this process, or on cluster c.
func transfersSurviveKills(t *testing.T, bin, savingsDB string, c *clustertest.Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		node *coord.Node
		urls string
		err  error
	)
	if c == nil {
		node, err = coord.Open(ctx, coord.WithDataDir(t.TempDir()), coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth(), nodetest.Quiet())
		urls = ""
	} else {
		node, err = coord.Open(ctx, coord.WithClient(c.URLs(), nodetest.ClientAuth()), coord.WithName("tester"), nodetest.Quiet())
		urls = strings.Join(c.URLs(), ",")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if urls == "" {
		urls = node.ClientURL()
	}
	var procs []*bankProc
	for _, role := range []string{"accounts", "transfer", "transfer"} {
		p := &bankProc{bin: bin, nats: urls, dir: filepath.Join(t.TempDir(), role), role: role, logs: new(strings.Builder),
			savingsDB: savingsDB}
		if role == "transfer" {
			p.chaos = 0.2
		}
		p.start(t)
		procs = append(procs, p)
	}
	defer func() {
		for _, p := range procs {
			p.kill()
			if t.Failed() {
				p.mu.Lock()
				t.Logf("logs of %s (%s):\n%s", p.role, p.dir, tail(p.logs.String(), 40))
				p.mu.Unlock()
			}
		}
	}()
	resolver := registry.NewResolver(node)
	defer resolver.Close()
	conn := rpc.NewResolvingConn(resolver)
	defer conn.Close()
	transfer := bankv1concord.NewTransferServiceClient(conn)
	checking := bankv1concord.NewCheckingServiceClient(conn)
	savings := bankv1concord.NewSavingsServiceClient(conn)

	// Wait for the seed accounts.
	want := seedTotal()
	waitFor(t, 30*time.Second, "seed accounts", func() bool {
		total, _, err := balances(checking, savings)
		return err == nil && total == want
	})

	var committed, refused, failed atomic.Int64
	var kindsMu sync.Mutex
	kinds := map[string]int{} // failure messages, cut, for the log
	stop := make(chan struct{})
	var wg sync.WaitGroup
	accounts := []string{"alice", "bob"}
	for w := range 6 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req := &bankv1.TransferRequest{
					From:        bankv1.Side(1 + r.IntN(2)),
					FromAccount: accounts[r.IntN(2)], ToAccount: accounts[r.IntN(2)],
					Amount: 1 + r.Int64N(6000),
				}
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := transfer.Transfer(cctx, req)
				cancel()
				switch {
				case err == nil:
					committed.Add(1)
				case strings.Contains(err.Error(), "insufficient funds"):
					refused.Add(1)
				default:
					failed.Add(1)
					msg := err.Error()
					if i := strings.IndexAny(msg, "0123456789"); i > 0 {
						msg = msg[:i]
					}
					kindsMu.Lock()
					kinds[msg]++
					kindsMu.Unlock()
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	// The faults: each process is killed twice, at random moments, and
	// restarted on its data directory.
	fr := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for round := range 6 {
		time.Sleep(time.Duration(500+fr.IntN(1000)) * time.Millisecond)
		if c != nil && round == 1 {
			c.Nodes[1].Kill9()
			t.Logf("killed node %s", c.Nodes[1].Name)
		}
		if c != nil && round == 4 {
			c.Restart(t, c.Nodes[1])
			t.Logf("restarted node %s", c.Nodes[1].Name)
		}
		p := procs[round%3]
		p.kill()
		time.Sleep(time.Duration(fr.IntN(300)) * time.Millisecond)
		p.start(t)
	}
	time.Sleep(time.Second)
	// The load goes on until it has both committed and refused transfers
	// (on a loaded machine the kills can take all of the rounds above):
	// the invariants below must hold over both outcomes.
	both := func() bool { return committed.Load() > 0 && refused.Load() > 0 }
	for end := time.Now().Add(60 * time.Second); !both() && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if !both() {
		t.Fatalf("the load did not both commit and refuse transfers within a minute of the faults: %d committed, %d refused, %d failed",
			committed.Load(), refused.Load(), failed.Load())
	}
	faultsEnded := time.Now()
	t.Logf("transfers: %d committed, %d refused, %d failed (during kills): %v", committed.Load(), refused.Load(), failed.Load(), kinds)

	// Every transaction ends: none is left in the log.
	log := txlog.Open(node)
	var left []*txlog.Record
	waitFor(t, settleWithin, "every transaction to end", func() bool {
		left, _, err = log.List(context.Background(), 0)
		return err == nil && len(left) == 0
	})
	t.Logf("every transaction ended %v after the faults stopped", time.Since(faultsEnded).Round(time.Millisecond))
	recovered := 0
	for _, p := range procs {
		p.mu.Lock()
		recovered += strings.Count(p.logs.String(), "tcc: cancelling a transaction left undecided") +
			strings.Count(p.logs.String(), "tcc: finishing a transaction its coordinator left")
		p.mu.Unlock()
	}
	t.Logf("recovery finished %d transactions that killed coordinators left", recovered)

	total, all, err := balances(checking, savings)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range all {
		if b.GetAvailable() < 0 || b.GetReserved() != 0 || b.GetIncoming() != 0 {
			t.Errorf("account %s: available %d, reserved %d, incoming %d; want available >= 0, nothing reserved or incoming",
				b.GetAccount(), b.GetAvailable(), b.GetReserved(), b.GetIncoming())
		}
	}
	if total != want {
		t.Fatalf("money not conserved: %d in all accounts, %d seeded (%+v)", total, want, all)
	}
}

// balances returns the sum of available and reserved over every account
// of both services, and the accounts.
func balances(checking interface {
	ListBalances(context.Context, *bankv1.ListBalancesRequest) (*bankv1.ListBalancesResponse, error)
}, savings interface {
	ListBalances(context.Context, *bankv1.ListBalancesRequest) (*bankv1.ListBalancesResponse, error)
}) (int64, []*bankv1.Balance, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var all []*bankv1.Balance
	for _, s := range []interface {
		ListBalances(context.Context, *bankv1.ListBalancesRequest) (*bankv1.ListBalancesResponse, error)
	}{checking, savings} {
		res, err := s.ListBalances(ctx, &bankv1.ListBalancesRequest{})
		if err != nil {
			return 0, nil, err
		}
		all = append(all, res.GetAccounts()...)
	}
	var sum int64
	for _, b := range all {
		sum += b.GetAvailable() + b.GetReserved()
	}
	if len(all) != len(seed) {
		return 0, all, fmt.Errorf("%d accounts, want %d", len(all), len(seed))
	}
	return sum, all, nil
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for i := 0; i < 100000; i++ {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
