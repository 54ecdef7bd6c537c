package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	bankv1 "github.com/concordrpc/concord/examples/bank/gen/bank/v1"
	"github.com/concordrpc/concord/examples/bank/gen/bank/v1/bankv1concord"
	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/tcc"
)

// wholeBank is a bank process of role "all" running in this test, on an
// embedded node in its data directory.
type wholeBank struct {
	addr string
	conn *rpc.Conn
	stop func()
}

func startWholeBank(t *testing.T, dir string) *wholeBank {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b, err := newApp(ctx, slog.New(slog.DiscardHandler), config{
		addr: "127.0.0.1:0", data: dir, role: "all", timeout: tcc.DefaultTimeout, stale: tcc.DefaultStaleAfter,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.run(ctx) }()
	actx, acancel := context.WithTimeout(ctx, 20*time.Second)
	addr, err := b.app.Server().Addr(actx)
	acancel()
	if err != nil {
		cancel()
		<-done
		b.closeDB()
		t.Fatal(err)
	}
	w := &wholeBank{addr: addr.String(), conn: rpc.NewConn("http://" + addr.String())}
	w.stop = func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, rpc.ErrDrainTimeout) {
			t.Errorf("run: %v", err)
		}
		w.conn.Close()
		b.closeDB()
	}
	return w
}

// TestTransfersReachTheStatement makes committed and refused transfers,
// with a restart of the process in between, and checks the statement
// read model that the TransferCompleted events build: every committed
// transfer appears exactly once in the statement of each of its two
// accounts, with its amount, side and counterparty, and a refused
// transfer appears nowhere. A committed transfer from the same account as
// the refused ones comes after them: its event is ordered after any event
// they could have produced (same key), so once it is in the statement,
// theirs would be too.
func TestTransfersReachTheStatement(t *testing.T) {
	dir := t.TempDir()
	bank := startWholeBank(t, dir)
	defer func() { bank.stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The seed accounts are opened once the App's store is.
	eventually(t, ctx, "seed accounts", func() bool {
		c, err1 := bankv1concord.NewCheckingServiceClient(bank.conn).ListBalances(ctx, &bankv1.ListBalancesRequest{})
		s, err2 := bankv1concord.NewSavingsServiceClient(bank.conn).ListBalances(ctx, &bankv1.ListBalancesRequest{})
		return err1 == nil && err2 == nil && len(c.GetAccounts()) == 2 && len(s.GetAccounts()) == 2
	})

	type transfer struct {
		from     bankv1.Side
		fromAcct string
		toAcct   string
		amount   int64
		refused  connect.Code // 0: must commit
	}
	type done struct {
		transfer
		id string
	}
	var committed []done
	run := func(tr transfer) {
		t.Helper()
		res, err := bankv1concord.NewTransferServiceClient(bank.conn).Transfer(ctx, &bankv1.TransferRequest{
			From: tr.from, FromAccount: tr.fromAcct, ToAccount: tr.toAcct, Amount: tr.amount,
		})
		switch {
		case tr.refused == 0 && err != nil:
			t.Fatalf("transfer %+v: %v", tr, err)
		case tr.refused != 0 && connect.CodeOf(err) != tr.refused:
			t.Fatalf("transfer %+v: got %v, want %v", tr, err, tr.refused)
		case tr.refused == 0:
			committed = append(committed, done{tr, res.GetTransactionId()})
		}
	}
	checking, savings := bankv1.Side_SIDE_CHECKING, bankv1.Side_SIDE_SAVINGS
	run(transfer{checking, "alice", "bob", 1000, 0})
	run(transfer{checking, "alice", "alice", 2000, 0})
	run(transfer{savings, "bob", "alice", 500, 0})
	run(transfer{checking, "bob", "alice", 300, 0})
	run(transfer{savings, "alice", "bob", 1_000_000, connect.CodeFailedPrecondition}) // savings alice has 2300
	run(transfer{checking, "alice", "nobody", 10, connect.CodeNotFound})              // no savings account nobody
	run(transfer{savings, "alice", "bob", 100, 0})                                    // after the refused ones, same key
	// Events written before a restart and after it are each applied once.
	bank.stop()
	bank = startWholeBank(t, dir)
	run(transfer{checking, "bob", "bob", 50, 0})

	// What each account's statement must hold: transaction ID -> entry.
	want := map[string]map[string]*bankv1.StatementEntry{}
	add := func(account, id string, side bankv1.Side, amount int64, counterparty string) {
		if want[account] == nil {
			want[account] = map[string]*bankv1.StatementEntry{}
		}
		want[account][id+"/"+side.String()] = &bankv1.StatementEntry{TransactionId: id, Side: side, Amount: amount, Counterparty: counterparty}
	}
	for _, c := range committed {
		to := savings
		if c.from == savings {
			to = checking
		}
		add(c.fromAcct, c.id, c.from, -c.amount, c.toAcct)
		add(c.toAcct, c.id, to, c.amount, c.fromAcct)
	}
	statement := bankv1concord.NewStatementServiceClient(bank.conn)
	for _, account := range []string{"alice", "bob"} {
		var entries []*bankv1.StatementEntry
		eventually(t, ctx, "the statement of "+account, func() bool {
			res, err := statement.ListStatement(ctx, &bankv1.ListStatementRequest{Account: account})
			entries = res.GetEntries()
			return err == nil && len(entries) >= len(want[account])
		})
		t.Logf("%s's statement: %d entries", account, len(entries))
		seen := map[string]int{}
		for _, e := range entries {
			k := e.GetTransactionId() + "/" + e.GetSide().String()
			seen[k]++
			w, ok := want[account][k]
			switch {
			case !ok:
				t.Errorf("%s's statement holds an entry of no committed transfer: %v", account, e)
			case e.GetAmount() != w.GetAmount() || e.GetCounterparty() != w.GetCounterparty() || e.GetTime() == "":
				t.Errorf("%s's statement entry %v, want %v with a time", account, e, w)
			}
		}
		for k := range want[account] {
			if seen[k] != 1 {
				t.Errorf("%s's statement holds transfer %s %d times, want once", account, k, seen[k])
			}
		}
		if len(entries) != len(want[account]) {
			t.Errorf("%s's statement has %d entries, want %d", account, len(entries), len(want[account]))
		}
	}
	// The refused transfer to nobody left nothing; the README's curl call
	// (plain JSON over HTTP) reads the same statement.
	if n := statementLen(t, ctx, bank.addr, "nobody"); n != 0 {
		t.Errorf("the statement of nobody has %d entries, want 0", n)
	}
	if n := statementLen(t, ctx, bank.addr, "bob"); n != len(want["bob"]) {
		t.Errorf("the statement of bob over JSON has %d entries, want %d", n, len(want["bob"]))
	}
}

// statementLen calls ListStatement with JSON over HTTP, as curl does, and
// returns the number of entries.
func statementLen(t *testing.T, ctx context.Context, addr, account string) int {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"account": account})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/bank.v1.StatementService/ListStatement", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusOK {
		t.Fatalf("ListStatement %s: %s: %s", account, res.Status, b)
	}
	var out struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("ListStatement %s: %v: %s", account, err, b)
	}
	return len(out.Entries)
}

// eventually polls cond every 50 ms until it holds, and fails the test
// when ctx ends first.
func eventually(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not reached: %v", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
