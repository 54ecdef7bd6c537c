package bank

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/proto"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	bankv1 "github.com/concordrpc/concord/examples/bank/gen/bank/v1"
	"github.com/concordrpc/concord/examples/bank/gen/bank/v1/bankv1concord"
	"github.com/concordrpc/concord/internal/wait"
	"github.com/concordrpc/concord/msg"
	"github.com/concordrpc/concord/tcc"
)

// StatementConsumer is the consumer name under which the statement service
// receives TransferCompleted events.
const StatementConsumer = "statement"

// App is what Events needs of a *concord.App: its local Badger store and
// its coordination node.
type App interface {
	localstore.Source
	Node(ctx context.Context) (*coord.Node, error)
}

// Events is the bank's messaging on an App: the outbox in the App's local
// store that the checking service's Confirm writes TransferCompleted
// into, and, while Run runs, the relay that publishes it and the
// statement's subscription. It is safe for concurrent use.
type Events struct {
	app    App
	logger *slog.Logger

	mu     sync.Mutex
	local  *localstore.Store // the store that store and outbox belong to
	store  *msg.BadgerStore
	outbox *msg.Outbox[*localstore.Tx]
}

// NewEvents returns the messaging of app.
func NewEvents(app App, logger *slog.Logger) *Events {
	return &Events{app: app, logger: logger}
}

// open returns the msg store and outbox of the App's local store: one
// BadgerStore per localstore.Store, shared by the outbox, the relay and
// the subscription, as package msg requires.
func (e *Events) open(ctx context.Context) (*msg.BadgerStore, *msg.Outbox[*localstore.Tx], error) {
	local, err := e.app.Local(ctx)
	if err != nil {
		return nil, nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.local != local {
		e.local, e.store = local, msg.Badger(local)
		e.outbox = msg.NewOutbox(e.store)
	}
	return e.store, e.outbox, nil
}

// announce writes the TransferCompleted event of a checking branch's
// Confirm into the outbox, in the barrier's local transaction: it commits
// with the balance change or not at all. Each transfer has exactly one
// checking branch, and the barrier runs its Confirm once, so each
// committed transfer is announced once.
func (e *Events) announce(ctx context.Context, req *bankv1.ChangeRequest) error {
	tx := tcc.BadgerTx(ctx)
	if tx == nil {
		return errors.New("bank: checking Confirm outside a TCC barrier")
	}
	var h *connect.Header
	if info, ok := connect.CallInfoForServerContext(ctx); ok {
		h = info.RequestHeader()
	}
	k, err := tcc.ParseHeaders(h)
	if err != nil {
		return err
	}
	ev := &bankv1.TransferCompleted{TransactionId: k.TxID, Amount: req.GetAmount()}
	if req.GetAmount() < 0 {
		ev.From, ev.FromAccount, ev.ToAccount, ev.Amount = bankv1.Side_SIDE_CHECKING, req.GetAccount(), req.GetCounterparty(), -req.GetAmount()
	} else {
		ev.From, ev.FromAccount, ev.ToAccount = bankv1.Side_SIDE_SAVINGS, req.GetCounterparty(), req.GetAccount()
	}
	_, outbox, err := e.open(ctx)
	if err != nil {
		return err
	}
	_, err = bankv1concord.PublishTransferCompleted(ctx, outbox, tx, ev)
	return err
}

// Run relays the outbox to the App's node and keeps st's subscription
// until ctx ends or the App stops, then closes both and returns. If the
// App replaces its node (client mode, after a connection closed for
// good), Run starts them again on the new one.
func (e *Events) Run(ctx context.Context, st *Statement) {
	for ctx.Err() == nil {
		node, err := e.app.Node(ctx)
		if errors.Is(err, coord.ErrUnavailable) {
			wait.Sleep(ctx, time.Second)
			continue
		}
		if err != nil {
			return // ctx ended or the App stopped
		}
		store, outbox, err := e.open(ctx)
		if err != nil {
			return
		}
		relay := msg.StartRelay(node, outbox, msg.WithLogger(e.logger))
		sub, err := bankv1concord.SubscribeTransferCompleted(ctx, node, store, StatementConsumer, st.apply, msg.WithLogger(e.logger))
		if err != nil {
			_ = relay.Close()
			if ctx.Err() == nil {
				e.logger.Warn("bank: statement subscription failed; retrying", slog.Any("error", err))
				wait.Sleep(ctx, time.Second)
			}
			continue
		}
		stopped := e.watchNode(ctx, node)
		_ = sub.Close()
		_ = relay.Close()
		if stopped {
			return
		}
	}
}

// watchNode waits until ctx ends or the App stops (true), or the App's
// node is no longer node (false).
func (e *Events) watchNode(ctx context.Context, node *coord.Node) bool {
	for wait.Sleep(ctx, time.Second) {
		n, err := e.app.Node(ctx)
		switch {
		case errors.Is(err, coord.ErrUnavailable):
		case err != nil:
			return true
		case n != node:
			return false
		}
	}
	return true
}

// Statement is the statement service: a read model of TransferCompleted
// events, one entry per account and transfer, in the App's local store
// under "bank/statement/<account>/".
type Statement struct{ src tcc.LocalStore }

// NewStatement returns the statement service, with its entries in the
// local store that src hands out (an App).
func NewStatement(src tcc.LocalStore) *Statement { return &Statement{src: src} }

const statementPrefix = "bank/statement/"

// accountRE is the account name rule of the .proto: names reach keys only
// if they match it, so one cannot reach into another's statement.
var accountRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// apply records ev in the statements of its two accounts, in tx, the
// transaction that also records the event in the consumer's inbox. An
// event whose accounts are not valid names is dead-lettered. An account
// left empty (a Confirm outside a transfer) gets no entry.
func (s *Statement) apply(_ context.Context, tx *localstore.Tx, ev *bankv1.TransferCompleted, d *msg.Delivery) error {
	to := bankv1.Side_SIDE_SAVINGS
	if ev.GetFrom() == bankv1.Side_SIDE_SAVINGS {
		to = bankv1.Side_SIDE_CHECKING
	}
	at, written := "", uint64(0)
	if !d.Written.IsZero() {
		at, written = d.Written.UTC().Format(time.RFC3339Nano), uint64(max(d.Written.UnixNano(), 0))
	}
	entries := []*bankv1.StatementEntry{
		{TransactionId: ev.GetTransactionId(), Side: ev.GetFrom(), Amount: -ev.GetAmount(), Counterparty: ev.GetToAccount(), Time: at},
		{TransactionId: ev.GetTransactionId(), Side: to, Amount: ev.GetAmount(), Counterparty: ev.GetFromAccount(), Time: at},
	}
	for i, account := range []string{ev.GetFromAccount(), ev.GetToAccount()} {
		if account == "" {
			continue
		}
		if !accountRE.MatchString(account) {
			return msg.Permanent(fmt.Errorf("bank: event %s names account %q", d.ID, account))
		}
		// Oldest first: the write time, then the message ID and the side.
		key := fmt.Sprintf("%s%s/%016x/%s/%d", statementPrefix, account, written, d.ID, i)
		v, err := proto.Marshal(entries[i])
		if err != nil {
			return err
		}
		if err := tx.Set([]byte(key), v); err != nil {
			return err
		}
	}
	return nil
}

// ListStatement returns an account's entries, oldest first.
func (s *Statement) ListStatement(ctx context.Context, req *bankv1.ListStatementRequest) (*bankv1.ListStatementResponse, error) {
	store, err := s.src.Local(ctx)
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, err.Error()).WithCause(err)
	}
	res := &bankv1.ListStatementResponse{}
	err = store.Scan([]byte(statementPrefix+req.GetAccount()+"/"), func(_, v []byte) error {
		e := new(bankv1.StatementEntry)
		if err := proto.Unmarshal(v, e); err != nil {
			return err
		}
		res.Entries = append(res.Entries, e)
		return nil
	})
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, err.Error()).WithCause(err)
	}
	return res, nil
}
