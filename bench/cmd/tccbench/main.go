// Command tccbench measures two-branch TCC transfers through Concord's
// coordinator against the same four RPCs made without a coordinator or a
// barrier, in one run:
//
//	cd bench && go run ./cmd/tccbench [flags]
//
// Every row uses the bank example's account services in this process, on
// loopback, each write synced to disk, with two stores for the savings
// side: "badger" keeps both sides in the App's Badger store (Badger
// commits in groups); "sqlite" keeps savings in SQLite as the example
// does (one writer, one fsync per commit). Each worker moves 1 cent from
// its own checking account to its own savings account, so workers do not
// contend on rows.
//
//   - tcc: App.TCC with a debit branch and a credit branch: the
//     transaction logged on the embedded node's CONCORD_TXLOG (fsynced),
//     both Trys concurrently through the barrier, the decision logged,
//     both Confirms concurrently, the end logged.
//   - 4 RPCs: the same handlers on a server without the barrier, each call
//     in its own local transaction (Badger Update or a SQL transaction):
//     both Trys concurrently, then both Confirms concurrently; no log.
//
// It reports transfers per second and the p50 and p99 latency of one
// transfer at each concurrency, and the tcc row as a ratio of the 4-RPC
// row. The limit for durable writes: a fsynced JetStream publish
// does about 11,000/s and a synced Badger commit about 16,000/s at
// concurrency 32 on the 2-core machine; a transfer makes three log
// writes, two Badger commits and two SQLite commits on its path.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/bench/internal/closedloop"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/examples/bank/bank"
	bankv1 "github.com/concordrpc/concord/examples/bank/gen/bank/v1"
	"github.com/concordrpc/concord/examples/bank/gen/bank/v1/bankv1concord"
	"github.com/concordrpc/concord/examples/bank/gen/bank/v1/bankv1connect"
	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/tcc"
)

func main() {
	duration := flag.Duration("duration", 3*time.Second, "measured duration of each row")
	warmup := flag.Duration("warmup", time.Second, "warm-up before each row")
	conc := flag.String("concurrency", "1,32", "comma-separated numbers of concurrent transfers")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	counts, err := closedloop.ParseCounts(*conc)
	if err != nil {
		fatal(fmt.Errorf("-concurrency: %w", err))
	}
	dir, err := os.MkdirTemp("", "tccbench")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	workers := slices.Max(counts)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STORES\tROW\tCONCURRENCY\tTRANSFERS/S\tP50\tP99\tTCC/4 RPCS")
	for _, sqlite := range []bool{false, true} {
		stores := "badger"
		if sqlite {
			stores = "badger+sqlite"
		}
		t, err := startTCC(ctx, filepath.Join(dir, stores, "tcc"), workers, sqlite)
		if err != nil {
			fatal(err)
		}
		p, err := startPlain(ctx, filepath.Join(dir, stores, "plain"), workers, sqlite)
		if err != nil {
			fatal(err)
		}
		for _, n := range counts {
			plain, err := closedloop.Run(n, *warmup, *duration, p.transfer)
			if err != nil {
				fatal(fmt.Errorf("%s, 4 RPCs, concurrency %d: %w", stores, n, err))
			}
			coord, err := closedloop.Run(n, *warmup, *duration, t.transfer)
			if err != nil {
				fatal(fmt.Errorf("%s, tcc, concurrency %d: %w", stores, n, err))
			}
			fmt.Fprintf(tw, "%s\t4 RPCs\t%d\t%.0f\t%v\t%v\t\n", stores, n, plain.PerSecond, plain.P50, plain.P99)
			fmt.Fprintf(tw, "%s\ttcc\t%d\t%.0f\t%v\t%v\t%.2fx\n", stores, n, coord.PerSecond, coord.P50, coord.P99, coord.PerSecond/plain.PerSecond)
			fmt.Fprintf(os.Stderr, "%s, concurrency %d: tcc %.0f/s, 4 RPCs %.0f/s\n", stores, n, coord.PerSecond, plain.PerSecond)
		}
		if !sqlite {
			if err := rawRows(ctx, tw, t.app, filepath.Join(dir, "raw"), workers, *duration); err != nil {
				fatal(err)
			}
		}
		t.close()
		p.close()
	}
	tw.Flush()
}

// rawRows prints the durable writes a transfer is made of, alone, at the
// highest concurrency: a fsynced JetStream publish on the App's node (a
// log write) and a synced Badger commit (a participant's phase), and the
// transfer rate they bound: a transfer makes three log writes (begin,
// decision, end) and four Badger commits (two Trys, two Confirms).
func rawRows(ctx context.Context, tw io.Writer, app *concord.App, dir string, workers int, duration time.Duration) error {
	node, err := app.Node(ctx)
	if err != nil {
		return err
	}
	js := node.JetStream()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "TCCBENCH", Subjects: []string{"tccbench.>"}, Storage: jetstream.FileStorage, MaxMsgs: 100000}); err != nil {
		return err
	}
	store, err := localstore.Open(dir, localstore.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return err
	}
	defer store.Close()
	publish, err := closedloop.Run(workers, time.Second, duration, func(ctx context.Context, w int) error {
		_, err := js.Publish(ctx, "tccbench."+strconv.Itoa(w), []byte("x"))
		return err
	})
	if err != nil {
		return fmt.Errorf("raw publish: %w", err)
	}
	var n atomic.Int64
	commit, err := closedloop.Run(workers, time.Second, duration, func(ctx context.Context, w int) error {
		return store.Set([]byte("k"+strconv.FormatInt(n.Add(1), 10)), []byte("x"))
	})
	if err != nil {
		return fmt.Errorf("raw commit: %w", err)
	}
	fmt.Fprintf(tw, "raw\tJetStream publish (fsynced)\t%d\t%.0f\t%v\t%v\t\n", workers, publish.PerSecond, publish.P50, publish.P99)
	fmt.Fprintf(tw, "raw\tBadger commit (synced)\t%d\t%.0f\t%v\t%v\t\n", workers, commit.PerSecond, commit.P50, commit.P99)
	fmt.Fprintf(tw, "raw\tbound: 1/(3/publish+4/commit)\t%d\t%.0f\t\t\t\n", workers, 1/(3/publish.PerSecond+4/commit.PerSecond))
	return nil
}

// accounts opens each worker's checking and savings account with money
// for every transfer a run can make.
func openAccounts(ctx context.Context, checking, savings *bank.Accounts, workers int) error {
	for w := range workers {
		if err := checking.Open(ctx, account(w), 1e15); err != nil {
			return err
		}
		if err := savings.Open(ctx, savingsAccount(w), 0); err != nil {
			return err
		}
	}
	return nil
}

func account(w int) string { return "w" + strconv.Itoa(w) }

// savingsAccount is worker w's savings account: its own name, since with
// both sides on one Badger store the two services share a key space.
func savingsAccount(w int) string { return "s" + strconv.Itoa(w) }

// tccBank is an App with both participants, coordinating transfers.
type tccBank struct {
	app  *concord.App
	stop func()
}

func startTCC(ctx context.Context, dir string, workers int, sqlite bool) (*tccBank, error) {
	opts := []concord.Option{
		concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr(""), concord.WithDataDir(dir),
		concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0),
	}
	local := []*rpc.ServicePolicy{bankv1concord.CheckingServicePolicy()}
	var (
		db      *sql.DB
		savings *bank.Accounts
	)
	if sqlite {
		var err error
		if db, err = bank.OpenSQLite(dir); err != nil {
			return nil, err
		}
		barrier, err := tcc.NewSQLBarrier(db, tcc.SQLite())
		if err == nil {
			err = barrier.CreateTable(ctx)
		}
		if err == nil {
			savings, err = bank.NewSavings(ctx, db, tcc.SQLite())
		}
		if err != nil {
			db.Close()
			return nil, err
		}
		opts = append(opts, concord.WithServerOptions(rpc.WithTCCParticipant(tcc.NewInterceptor(barrier, bankv1concord.SavingsServicePolicy()))))
	} else {
		local = append(local, bankv1concord.SavingsServicePolicy())
	}
	app := concord.New(append(opts, concord.WithTCCLocalBarrier(local))...)
	checking := bank.NewChecking(app, nil)
	if savings == nil {
		savings = checking
	}
	bankv1concord.RegisterCheckingService(app, checking)
	bankv1concord.RegisterSavingsService(app, savings)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(rctx) }()
	b := &tccBank{app: app, stop: func() {
		cancel()
		<-done
		if db != nil {
			db.Close()
		}
	}}
	octx, ocancel := context.WithTimeout(ctx, time.Minute)
	defer ocancel()
	if _, err := app.Node(octx); err != nil {
		b.stop()
		return nil, err
	}
	if err := openAccounts(octx, checking, savings, workers); err != nil {
		b.stop()
		return nil, err
	}
	return b, nil
}

func (b *tccBank) transfer(ctx context.Context, w int) error {
	_, err := b.app.TCC(ctx, func(tx *tcc.Tx) error {
		d, err := bankv1concord.CheckingServiceChangeBranch(&bankv1.ChangeRequest{Account: account(w), Amount: -1})
		if err != nil {
			return err
		}
		c, err := bankv1concord.SavingsServiceChangeBranch(&bankv1.ChangeRequest{Account: savingsAccount(w), Amount: 1})
		if err != nil {
			return err
		}
		tx.Try(d)
		tx.Try(c)
		return nil
	})
	return err
}

func (b *tccBank) close() { b.stop() }

// plainBank serves the same handlers without a barrier: each call runs in
// its own local transaction.
type plainBank struct {
	checking      bankv1connect.CheckingServiceClient
	savingsClient bankv1connect.SavingsServiceClient
	stop          func()
}

type storeSource struct{ s *localstore.Store }

func (s storeSource) Local(context.Context) (*localstore.Store, error) { return s.s, nil }

func startPlain(ctx context.Context, dir string, workers int, sqlite bool) (*plainBank, error) {
	store, err := localstore.Open(filepath.Join(dir, "local"), localstore.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return nil, err
	}
	checking := bank.NewChecking(storeSource{store}, nil)
	savings := checking
	var db *sql.DB
	if sqlite {
		if db, err = bank.OpenSQLite(dir); err == nil {
			savings, err = bank.NewSavings(ctx, db, tcc.SQLite())
		}
		if err != nil {
			store.Close()
			if db != nil {
				db.Close()
			}
			return nil, err
		}
	}
	closeDB := func() {
		if db != nil {
			db.Close()
		}
	}
	checkingPolicy, savingsPolicy := bankv1concord.CheckingServicePolicy(), bankv1concord.SavingsServicePolicy()
	// Each call of a phase method in its own local transaction, as the
	// barrier would run it, without the barrier's rows.
	local := func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			switch {
			case checkingPolicy.Method(spec.Procedure) != nil && !strings.HasSuffix(spec.Procedure, "/ListBalances"):
				return store.Update(func(tx *localstore.Tx) error { return next(tcc.WithBadgerTx(ctx, tx), spec, stream) })
			case savingsPolicy.Method(spec.Procedure) != nil && !strings.HasSuffix(spec.Procedure, "/ListBalances") && db == nil:
				return store.Update(func(tx *localstore.Tx) error { return next(tcc.WithBadgerTx(ctx, tx), spec, stream) })
			case savingsPolicy.Method(spec.Procedure) != nil && !strings.HasSuffix(spec.Procedure, "/ListBalances"):
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				if err := next(tcc.WithSQLTx(ctx, tx), spec, stream); err != nil {
					_ = tx.Rollback()
					return err
				}
				return tx.Commit()
			}
			return next(ctx, spec, stream)
		}
	}
	srv := rpc.NewServer(rpc.WithLogger(slog.New(slog.DiscardHandler)), rpc.WithInterceptors(local))
	bankv1concord.RegisterCheckingService(srv, checking)
	bankv1concord.RegisterSavingsService(srv, savings)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		store.Close()
		closeDB()
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	conn := rpc.NewConn("http://" + ln.Addr().String())
	p := &plainBank{
		checking:      bankv1concord.NewCheckingServiceClient(conn),
		savingsClient: bankv1concord.NewSavingsServiceClient(conn),
		stop:          func() { cancel(); <-done; conn.Close(); store.Close(); closeDB() },
	}
	if err := openAccounts(ctx, checking, savings, workers); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// transfer makes the four RPCs: both Trys concurrently, then both
// Confirms concurrently.
func (p *plainBank) transfer(ctx context.Context, w int) error {
	debit := &bankv1.ChangeRequest{Account: account(w), Amount: -1}
	credit := &bankv1.ChangeRequest{Account: savingsAccount(w), Amount: 1}
	both := func(a, b func() error) error {
		errc := make(chan error, 1)
		go func() { errc <- a() }()
		return errors.Join(b(), <-errc)
	}
	err := both(
		func() error { _, err := p.checking.Change(ctx, debit); return err },
		func() error { _, err := p.savingsClient.Change(ctx, credit); return err })
	if err != nil {
		return err
	}
	return both(
		func() error { _, err := p.checking.ConfirmChange(ctx, debit); return err },
		func() error { _, err := p.savingsClient.ConfirmChange(ctx, credit); return err })
}

func (p *plainBank) close() { p.stop() }

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "tccbench:", err)
	os.Exit(1)
}
