package main

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/examples/bank/bank"
	"github.com/concordrpc/concord/examples/bank/gen/bank/v1/bankv1concord"
	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/tcc"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", concord.DefaultAddr, "address to serve RPCs on")
	flag.StringVar(&cfg.admin, "admin", concord.DefaultAdminAddr, "address of the admin listener (concord status); keep it on loopback")
	flag.StringVar(&cfg.data, "data", "data-bank", "data directory of the node, the local store and the savings database")
	flag.StringVar(&cfg.role, "role", "all", "services to run: all, accounts (checking and savings) or transfer")
	flag.StringVar(&cfg.nats, "nats", "", "client mode: URLs of an existing NATS cluster, comma-separated (credentials in CONCORD_NATS_USER and CONCORD_NATS_PASSWORD)")
	flag.DurationVar(&cfg.timeout, "tcc-timeout", tcc.DefaultTimeout, "how long a transfer's branches may stay reserved without a decision")
	flag.DurationVar(&cfg.stale, "tcc-stale", tcc.DefaultStaleAfter, "how long recovery leaves a decided transfer to its coordinator")
	flag.StringVar(&cfg.savingsDB, "savings-db", "", "the savings service's database: a postgres:// URL, or empty for SQLite in the data directory")
	flag.Float64Var(&cfg.chaos, "chaos", 0, "fault injection for tests: the share of TCC phase calls whose request or response is dropped or that are sent twice")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, logger, cfg); err != nil {
		logger.Error("bank", slog.Any("error", err))
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	addr, admin, data, role, nats string
	savingsDB                     string
	timeout, stale                time.Duration
	chaos                         float64
}

// Accounts opened at the first start, in cents.
var seed = []struct {
	savings bool
	account string
	cents   int64
}{
	{false, "alice", 10000}, {false, "bob", 5000},
	{true, "alice", 0}, {true, "bob", 20000},
}

func run(ctx context.Context, logger *slog.Logger, cfg config) error {
	b, err := newApp(ctx, logger, cfg)
	if err != nil {
		return err
	}
	defer b.closeDB()
	err = b.run(ctx)
	if errors.Is(err, rpc.ErrDrainTimeout) {
		err = nil
	}
	return err
}

// bankApp is one bank process's App and its account services (nil for
// the transfer role).
type bankApp struct {
	app               *concord.App
	checking, savings *bank.Accounts
	closeDB           func()
	// stopEvents stops the outbox relay and the statement's subscription
	// and waits for them; it is idempotent.
	stopEvents func()
}

// run runs the App until ctx ends. It stops the relay and the statement's
// subscription before the App, which closes the local store they use.
func (b *bankApp) run(ctx context.Context) error {
	appCtx, stopApp := context.WithCancel(context.WithoutCancel(ctx))
	defer stopApp()
	unhook := context.AfterFunc(ctx, func() {
		b.stopEvents()
		stopApp()
	})
	defer unhook()
	err := b.app.Run(appCtx)
	b.stopEvents()
	return err
}

// newApp builds the App of cfg's role, and opens the savings database if
// it runs the account services (close it after Run with closeDB). The
// seed accounts are opened once the App's store is, while it runs.
func newApp(ctx context.Context, logger *slog.Logger, cfg config) (*bankApp, error) {
	closeDB := func() {}
	accounts, transfer := cfg.role == "all" || cfg.role == "accounts", cfg.role == "all" || cfg.role == "transfer"
	if !accounts && !transfer {
		return nil, fmt.Errorf("unknown -role %q: want all, accounts or transfer", cfg.role)
	}
	if err := os.MkdirAll(cfg.data, 0o700); err != nil {
		return nil, err
	}
	opts := []concord.Option{
		concord.WithAddr(cfg.addr),
		concord.WithAdminAddr(cfg.admin),
		concord.WithDataDir(cfg.data),
		concord.WithLogger(logger),
		concord.WithTCCOptions(tcc.WithDefaultTimeout(cfg.timeout), tcc.WithStaleAfter(cfg.stale)),
	}
	if cfg.chaos > 0 {
		opts = append(opts, concord.WithClientOptions(rpc.WithHTTPClient(chaosClient(cfg.chaos))))
	}
	if cfg.nats != "" {
		opts = append(opts, concord.WithCoordOptions(coord.WithClient(strings.Split(cfg.nats, ","), coord.ClientAuth{
			Username: cmp.Or(os.Getenv("CONCORD_NATS_USER"), "concord"), Password: os.Getenv("CONCORD_NATS_PASSWORD"),
		})))
	}
	var savings *bank.Accounts
	if accounts {
		db, dialect, err := openSavings(cfg)
		if err != nil {
			return nil, err
		}
		closeDB = func() { _ = db.Close() }
		barrier, err := tcc.NewSQLBarrier(db, dialect, tcc.WithLogger(logger))
		if err == nil {
			err = barrier.CreateTable(ctx)
		}
		if err == nil {
			savings, err = bank.NewSavings(ctx, db, dialect)
		}
		if err != nil {
			closeDB()
			return nil, fmt.Errorf("savings database: %w", err)
		}
		go tcc.RunCleanup(ctx, barrier, 0, logger) // the App cleans its own (Badger) barrier
		opts = append(opts,
			// Checking keeps its balances and barrier in the App's Badger
			// store; savings in SQLite, through the SQL barrier.
			concord.WithTCCLocalBarrier([]*rpc.ServicePolicy{bankv1concord.CheckingServicePolicy()}),
			concord.WithServerOptions(rpc.WithTCCParticipant(tcc.NewInterceptor(barrier, bankv1concord.SavingsServicePolicy()))))
	}
	app := concord.New(opts...)
	b := &bankApp{app: app, savings: savings, closeDB: closeDB, stopEvents: func() {}}
	if accounts {
		// The checking service announces transfers through its outbox; the
		// statement service keeps its read model from them. Events.Run
		// relays and subscribes once the App's node and store are up.
		events := bank.NewEvents(app, logger)
		statement := bank.NewStatement(app)
		checking := bank.NewChecking(app, events)
		b.checking = checking
		bankv1concord.RegisterCheckingService(app, checking)
		bankv1concord.RegisterSavingsService(app, savings)
		bankv1concord.RegisterStatementService(app, statement)
		evCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			events.Run(evCtx, statement)
		}()
		b.stopEvents = func() {
			cancel()
			<-done
		}
		go func() {
			for _, s := range seed {
				a := checking
				if s.savings {
					a = savings
				}
				if err := a.Open(ctx, s.account, s.cents); err != nil && ctx.Err() == nil {
					logger.Error("bank: open account", slog.String("account", s.account), slog.Any("error", err))
				}
			}
		}()
	}
	if transfer {
		bankv1concord.RegisterTransferService(app, bank.Transfer{TCC: app})
	}
	return b, nil
}

// openSavings opens the savings database: PostgreSQL for a postgres://
// -savings-db, else SQLite in the data directory (bank.OpenSQLite).
func openSavings(cfg config) (*sql.DB, tcc.Dialect, error) {
	if strings.HasPrefix(cfg.savingsDB, "postgres://") || strings.HasPrefix(cfg.savingsDB, "postgresql://") {
		db, err := sql.Open("pgx", cfg.savingsDB)
		return db, tcc.PostgreSQL(), err
	}
	if cfg.savingsDB != "" {
		return nil, tcc.Dialect{}, errors.New("-savings-db: want a postgres:// URL, or empty for SQLite")
	}
	db, err := bank.OpenSQLite(cfg.data)
	return db, tcc.SQLite(), err
}
