package tcc_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/coord/txlog"
	"github.com/concordrpc/concord/internal/nodetest"
	v1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1"
	"github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1/concordtestv1concord"
	"github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1/concordtestv1connect"
	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/tcc"
)

// Request amounts with a behaviour in the test participant.
const (
	refuse     = -1   // Try refused: failed_precondition
	flaky      = 1000 // Try fails with unavailable twice, then succeeds
	hang       = 2000 // Try waits for its context
	slowTry    = 3000 // Try takes 300ms
	plainValue = 5
)

// participant is a TestService with its barrier and effects in its own
// Badger store: effect/<phase>/<tx> keys record each phase that ran.
type participant struct {
	concordtestv1connect.UnimplementedTestServiceHandler
	store        *localstore.Store
	flakes       sync.Map // tx -> *atomic.Int64 failures so far
	failConfirm  atomic.Bool
	tries        atomic.Int64
	confirmCalls atomic.Int64
	url          string
}

func (p *participant) effect(ctx context.Context, phase, tx string) error {
	btx := tcc.BadgerTx(ctx)
	if btx == nil {
		return errors.New("no barrier transaction")
	}
	return btx.Set([]byte("effect/"+phase+"/"+tx), []byte("1"))
}

func (p *participant) Reserve(ctx context.Context, req *v1.ReserveRequest) (*v1.ReserveResponse, error) {
	p.tries.Add(1)
	switch req.GetAmount() {
	case refuse:
		return nil, connect.NewError(connect.CodeFailedPrecondition, "insufficient funds")
	case flaky:
		n, _ := p.flakes.LoadOrStore(req.GetTxId(), new(atomic.Int64))
		if n.(*atomic.Int64).Add(1) <= 2 {
			return nil, connect.NewError(connect.CodeUnavailable, "flaky")
		}
	case hang:
		<-ctx.Done()
		return nil, ctx.Err()
	case slowTry:
		time.Sleep(300 * time.Millisecond)
	}
	return &v1.ReserveResponse{}, p.effect(ctx, "try", req.GetTxId())
}

func (p *participant) ConfirmReserve(ctx context.Context, req *v1.ReserveRequest) (*v1.ConfirmReserveResponse, error) {
	p.confirmCalls.Add(1)
	if p.failConfirm.Load() {
		return nil, connect.NewError(connect.CodeUnavailable, "confirm is down")
	}
	return &v1.ConfirmReserveResponse{}, p.effect(ctx, "confirm", req.GetTxId())
}

func (p *participant) CancelReserve(ctx context.Context, req *v1.ReserveRequest) (*v1.CancelReserveResponse, error) {
	return &v1.CancelReserveResponse{}, p.effect(ctx, "cancel", req.GetTxId())
}

// has reports whether the participant recorded phase for tx.
func (p *participant) has(t *testing.T, phase, tx string) bool {
	t.Helper()
	_, err := p.store.Get([]byte("effect/" + phase + "/" + tx))
	if err != nil && !errors.Is(err, localstore.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func startTestParticipant(t *testing.T, opts ...rpc.ServerOption) *participant {
	t.Helper()
	store, err := localstore.Open(t.TempDir(), localstore.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	p := &participant{store: store}
	srv := rpc.NewServer(append([]rpc.ServerOption{rpc.WithLogger(slog.New(slog.DiscardHandler)),
		rpc.WithTCCParticipant(tcc.NewInterceptor(tcc.NewBadgerBarrier(store), concordtestv1concord.TestServicePolicy()))}, opts...)...)
	concordtestv1concord.RegisterTestService(srv, p)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.url = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("participant did not stop")
		}
		_ = store.Close()
	})
	return p
}

// fixture is a node, two participants ("left" and "right") and a
// coordinator that reaches them by those discovery names.
type fixture struct {
	node        *coord.Node
	left, right *participant
	res         rpc.Resolver
	conn        *rpc.Conn
	log         *txlog.Log
}

type mapResolver map[string][]rpc.Instance

func (r mapResolver) Resolve(_ context.Context, s string) ([]rpc.Instance, error) {
	if ins := r[s]; len(ins) > 0 {
		return ins, nil
	}
	return nil, errors.New("no instances of " + s)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{node: nodetest.Open(t), left: startTestParticipant(t), right: startTestParticipant(t)}
	f.res = mapResolver{"left": {{ID: "L", BaseURL: f.left.url}}, "right": {{ID: "R", BaseURL: f.right.url}}}
	f.conn = rpc.NewResolvingConn(f.res)
	t.Cleanup(func() { f.conn.Close() })
	f.log = txlog.Open(f.node)
	return f
}

func (f *fixture) coordinator(t *testing.T, opts ...tcc.CoordinatorOption) *tcc.Coordinator {
	t.Helper()
	c := tcc.NewCoordinator(lock.FromNode(f.node), f.conn, f.res, append([]tcc.CoordinatorOption{tcc.WithName("test")}, opts...)...)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// branch returns a branch of service ("left" or "right") with amount.
func branch(t *testing.T, service, tx string, amount int64) rpc.TCCBranch {
	t.Helper()
	b, err := concordtestv1concord.TestServiceReserveBranch(&v1.ReserveRequest{TxId: tx, Amount: amount})
	if err != nil {
		t.Fatal(err)
	}
	b.Service = service
	return b
}

// run runs a transaction with a left and a right branch. The request's
// tx_id names the transaction for the participants' effects.
func (f *fixture) run(t *testing.T, c *tcc.Coordinator, ctx context.Context, name string, left, right int64, opts ...tcc.TxOption) (tcc.Result, error) {
	t.Helper()
	return c.Run(ctx, func(tx *tcc.Tx) error {
		tx.Try(branch(t, "left", name, left))
		tx.Try(branch(t, "right", name, right))
		return nil
	}, opts...)
}

func (f *fixture) gone(t *testing.T, id string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for i := 0; i < 10000; i++ {
		_, err := f.log.Get(t.Context(), id)
		if errors.Is(err, txlog.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("transaction %s still in the log after %v (last: %v)", id, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCommitConfirmsEveryBranch(t *testing.T) {
	f := newFixture(t)
	c := f.coordinator(t)
	res, err := f.run(t, c, nodetest.Within(t, 20*time.Second), "commit", plainValue, plainValue)
	if err != nil {
		t.Fatal(err)
	}
	if res.State != txlog.StateConfirmed || res.ID == "" {
		t.Fatalf("result %+v", res)
	}
	for _, p := range []*participant{f.left, f.right} {
		if !p.has(t, "try", "commit") || !p.has(t, "confirm", "commit") || p.has(t, "cancel", "commit") {
			t.Fatal("want try and confirm on both, no cancel")
		}
	}
	f.gone(t, res.ID, 5*time.Second)
}

func TestRefusalCancelsEveryBranch(t *testing.T) {
	f := newFixture(t)
	c := f.coordinator(t)
	res, err := f.run(t, c, nodetest.Within(t, 20*time.Second), "refused", slowTry, refuse)
	if !errors.Is(err, tcc.ErrCancelled) || connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("Run: %v (code %v), want failed_precondition caused by ErrCancelled", err, connect.CodeOf(err))
	}
	if res.State != txlog.StateCancelled {
		t.Fatalf("result %+v", res)
	}
	// left's slow Try ran (or was cancelled first); either way it is
	// cancelled and never confirmed. right's refused Try left nothing.
	if !f.left.has(t, "cancel", "refused") && f.left.has(t, "try", "refused") {
		t.Fatal("left tried but not cancelled")
	}
	for _, p := range []*participant{f.left, f.right} {
		if p.has(t, "confirm", "refused") {
			t.Fatal("a branch of a cancelled transaction was confirmed")
		}
	}
	if f.right.has(t, "try", "refused") || f.right.has(t, "cancel", "refused") {
		t.Fatal("the refused branch has effects")
	}
	f.gone(t, res.ID, 5*time.Second)
}

func TestTransientTryIsRetried(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	var reports []tcc.PhaseReport
	c := f.coordinator(t, tcc.WithPhaseHook(func(r tcc.PhaseReport) {
		mu.Lock()
		reports = append(reports, r)
		mu.Unlock()
	}))
	if _, err := f.run(t, c, nodetest.Within(t, 20*time.Second), "flaky", plainValue, flaky); err != nil {
		t.Fatal(err)
	}
	if n := f.right.tries.Load(); n != 3 {
		t.Fatalf("right's Try ran %d times, want 3 (two transient failures)", n)
	}
	mu.Lock()
	var rightTries, unavailable, confirms int
	for _, r := range reports {
		switch {
		case r.Service == "right" && r.Phase == tcc.PhaseTry:
			rightTries++
			if r.Code == connect.CodeUnavailable {
				unavailable++
			}
		case r.Phase == tcc.PhaseConfirm && r.Code == 0:
			confirms++
		}
	}
	mu.Unlock()
	if rightTries != 3 || unavailable != 2 || confirms != 2 {
		t.Fatalf("phase hook saw %d right Trys (%d unavailable) and %d Confirms; want 3 (2), 2", rightTries, unavailable, confirms)
	}
	if !f.right.has(t, "confirm", "flaky") || !f.left.has(t, "confirm", "flaky") {
		t.Fatal("not confirmed")
	}
}

func TestTimeoutCancels(t *testing.T) {
	f := newFixture(t)
	c := f.coordinator(t)
	start := time.Now()
	_, err := f.run(t, c, nodetest.Within(t, 20*time.Second), "timeout", plainValue, hang, tcc.WithTimeout(time.Second))
	if !errors.Is(err, tcc.ErrCancelled) || connect.CodeOf(err) != connect.CodeDeadlineExceeded {
		t.Fatalf("Run: %v, want deadline_exceeded caused by ErrCancelled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Run took %v with a 1s timeout", d)
	}
	if !f.left.has(t, "cancel", "timeout") || f.left.has(t, "confirm", "timeout") {
		t.Fatal("left not cancelled")
	}
}

// TestConfirmRetriedUntilItSucceeds: a Confirm that keeps failing does not
// fail a committed transaction; its error is in the log (for status)
// while the coordinator retries in the background, and the transaction
// finishes once the participant answers.
func TestConfirmRetriedUntilItSucceeds(t *testing.T) {
	f := newFixture(t)
	c := f.coordinator(t)
	f.right.failConfirm.Store(true)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	res, err := f.run(t, c, ctx, "confirm-down", plainValue, plainValue)
	cancel()
	if err != nil || res.State != txlog.StateConfirming {
		t.Fatalf("Run: %+v, %v; want nil error, still confirming", res, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		rec, err := f.log.Get(t.Context(), res.ID)
		if err == nil && rec.Attempts > 0 && rec.Branches[1].Error != "" && rec.Branches[0].Done {
			break
		}
		if time.Now().After(deadline) || i > 1000 {
			t.Fatalf("no progress record with the failure: %+v, %v", rec, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Status lists it as stuck, with the failing branch's error.
	st := f.log.ReadStatus(t.Context(), 5*time.Second)
	if st.Unknown != "" || len(st.Stuck) != 1 || st.Stuck[0].ID != res.ID || !strings.Contains(st.Stuck[0].Branches[1].Error, "confirm is down") ||
		st.Stuck[0].Branches[0].Request != nil {
		t.Fatalf("status %+v, want %s stuck with right's error and no request bytes", st, res.ID)
	}
	f.right.failConfirm.Store(false)
	f.gone(t, res.ID, 15*time.Second)
	for i := 0; ; i++ { // the summary is published without waiting
		st = f.log.ReadStatus(t.Context(), 5*time.Second)
		if len(st.Finished) == 1 || i == 100 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(st.Stuck) != 0 || len(st.Finished) != 1 || st.Finished[0].State != txlog.StateConfirmed {
		t.Fatalf("status after the end %+v", st)
	}
	if !f.right.has(t, "confirm", "confirm-down") {
		t.Fatal("right not confirmed")
	}
}

// crashAfter runs Trys by hand and leaves the log as a coordinator that
// died in state would: trying (before the decision) or confirming
// (after).
func (f *fixture) crashAfter(t *testing.T, name string, state txlog.State, deadline time.Time) string {
	t.Helper()
	ctx := nodetest.Within(t, 10*time.Second)
	rec := &txlog.Record{ID: txlog.NewID(), State: txlog.StateTrying, Created: time.Now(), Deadline: deadline}
	for i, s := range []string{"left", "right"} {
		b := branch(t, s, name, plainValue)
		rec.Branches = append(rec.Branches, txlog.Branch{ID: "b" + strconv.Itoa(i+1), Service: s, Instance: map[string]string{"left": "L", "right": "R"}[s],
			Try: b.Try, Confirm: b.Confirm, Cancel: b.Cancel, Request: b.Request})
	}
	if err := f.log.Begin(ctx, rec); err != nil {
		t.Fatal(err)
	}
	// Only the left Try ran before the "crash".
	client := f.conn.Client(&rpc.ServicePolicy{DiscoveryName: "left"})
	b := rec.Branches[0]
	if err := tcc.Invoke(ctx, client, rpc.TCCBranch{Service: b.Service, Try: b.Try, Confirm: b.Confirm, Cancel: b.Cancel, Request: b.Request},
		tcc.PhaseTry, tcc.BranchKey{TxID: rec.ID, BranchID: b.ID}); err != nil {
		t.Fatal(err)
	}
	if state != txlog.StateTrying {
		if state == txlog.StateConfirming {
			// A real coordinator decides commit only after every Try.
			b := rec.Branches[1]
			if err := tcc.Invoke(ctx, f.conn.Client(&rpc.ServicePolicy{DiscoveryName: "right"}), rpc.TCCBranch{Service: b.Service, Try: b.Try, Confirm: b.Confirm, Cancel: b.Cancel, Request: b.Request},
				tcc.PhaseTry, tcc.BranchKey{TxID: rec.ID, BranchID: b.ID}); err != nil {
				t.Fatal(err)
			}
		}
		rec.State = state
		if err := f.log.Update(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	return rec.ID
}

func runRecovery(t *testing.T, c *tcc.Coordinator, elect bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if elect {
			_ = c.RunRecovery(ctx)
		} else if err := c.Recover(ctx); err != nil {
			t.Errorf("Recover: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// TestRecoveryFinishesDecided: a transaction whose coordinator died after
// deciding commit is confirmed by another coordinator's recovery.
func TestRecoveryFinishesDecided(t *testing.T) {
	f := newFixture(t)
	id := f.crashAfter(t, "decided", txlog.StateConfirming, time.Now().Add(time.Minute))
	runRecovery(t, f.coordinator(t, tcc.WithStaleAfter(time.Second)), true)
	f.gone(t, id, 20*time.Second)
	for _, p := range []*participant{f.left, f.right} {
		if !p.has(t, "confirm", "decided") || p.has(t, "cancel", "decided") {
			t.Fatal("want both confirmed, none cancelled")
		}
	}
}

// TestRecoveryCancelsUndecided: a transaction whose coordinator died
// before the decision is cancelled once its deadline passed: the branch
// that was tried is compensated, the other gets a null compensation (and
// a late Try of it would be refused).
func TestRecoveryCancelsUndecided(t *testing.T) {
	f := newFixture(t)
	id := f.crashAfter(t, "undecided", txlog.StateTrying, time.Now().Add(time.Second))
	start := time.Now()
	runRecovery(t, f.coordinator(t), false)
	f.gone(t, id, 20*time.Second)
	if d := time.Since(start); d < time.Second {
		t.Fatalf("cancelled after %v, before its deadline", d)
	}
	if !f.left.has(t, "cancel", "undecided") || f.left.has(t, "confirm", "undecided") {
		t.Fatal("left not cancelled")
	}
	if f.right.has(t, "cancel", "undecided") {
		t.Fatal("right ran a compensation for a Try that never ran")
	}
	// The hanging Try arrives now: refused, reserves nothing.
	b := branch(t, "right", "undecided", plainValue)
	err := tcc.Invoke(t.Context(), f.conn.Client(&rpc.ServicePolicy{DiscoveryName: "right"}), b, tcc.PhaseTry, tcc.BranchKey{TxID: id, BranchID: "b2"})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || f.right.has(t, "try", "undecided") {
		t.Fatalf("late Try: %v", err)
	}
}
