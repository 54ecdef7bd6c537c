package tcc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
)

// counter is a handler that writes one effect per committed run and counts
// its runs.
type counter struct{ runs atomic.Int64 }

func (c *counter) fn(effect string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		c.runs.Add(1)
		return writeEffect(ctx, effect)
	}
}

func key(tx, br string) BranchKey { return BranchKey{TxID: tx, BranchID: br} }

func mustOutcome(t *testing.T, got Outcome, err error, want Outcome) {
	t.Helper()
	if err != nil || got != want {
		t.Fatalf("Run = (%d, %v), want (%d, nil)", got, err, want)
	}
}

func TestDuplicatesAnsweredOnce(t *testing.T) {
	eachStore(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		var c counter
		k := key("tx-1", "b1")
		out, err := e.b.Run(ctx, k, PhaseTry, c.fn("try"))
		mustOutcome(t, out, err, OutcomeExecuted)
		for range 3 {
			out, err = e.b.Run(ctx, k, PhaseTry, c.fn("try-again"))
			mustOutcome(t, out, err, OutcomeReplayed)
		}
		out, err = e.b.Run(ctx, k, PhaseConfirm, c.fn("confirm"))
		mustOutcome(t, out, err, OutcomeExecuted)
		out, err = e.b.Run(ctx, k, PhaseConfirm, c.fn("confirm-again"))
		mustOutcome(t, out, err, OutcomeReplayed)
		// A repeated Try after Confirm is still answered as the first.
		out, err = e.b.Run(ctx, k, PhaseTry, c.fn("late-try"))
		mustOutcome(t, out, err, OutcomeReplayed)
		out, err = e.b.Run(ctx, k, PhaseCancel, c.fn("cancel"))
		if out != OutcomeRefused || !errors.Is(err, ErrAlreadyConfirmed) || connectCode(t, err) != connect.CodeFailedPrecondition {
			t.Fatalf("Cancel after Confirm = (%d, %v)", out, err)
		}

		k2 := key("tx-1", "b2")
		mustRun(t, e.b, k2, PhaseTry, c.fn("try2"), OutcomeExecuted)
		out, err = e.b.Run(ctx, k2, PhaseCancel, c.fn("cancel2"))
		mustOutcome(t, out, err, OutcomeExecuted)
		out, err = e.b.Run(ctx, k2, PhaseCancel, c.fn("cancel2-again"))
		mustOutcome(t, out, err, OutcomeReplayed)
		out, err = e.b.Run(ctx, k2, PhaseConfirm, c.fn("confirm2"))
		if out != OutcomeRefused || !errors.Is(err, ErrAlreadyCancelled) {
			t.Fatalf("Confirm after Cancel = (%d, %v)", out, err)
		}
		if got, want := e.effects(t), []string{"cancel2", "confirm", "try", "try2"}; !slices.Equal(got, want) {
			t.Fatalf("effects %v, want %v", got, want)
		}
		if c.runs.Load() != 4 {
			t.Fatalf("handler ran %d times, want 4", c.runs.Load())
		}
	})
}

// mustRun runs fn for phase of k and checks the outcome.
func mustRun(t *testing.T, b Barrier, k BranchKey, phase Phase, fn func(context.Context) error, want Outcome) {
	t.Helper()
	out, err := b.Run(context.Background(), k, phase, fn)
	mustOutcome(t, out, err, want)
}

func TestCancelBeforeTry(t *testing.T) {
	eachStore(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		var c counter
		k := key("tx-2", "b1")
		out, err := e.b.Run(ctx, k, PhaseCancel, c.fn("cancel"))
		mustOutcome(t, out, err, OutcomeSkipped)
		out, err = e.b.Run(ctx, k, PhaseCancel, c.fn("cancel"))
		mustOutcome(t, out, err, OutcomeReplayed)
		for range 2 {
			out, err = e.b.Run(ctx, k, PhaseTry, c.fn("try"))
			if out != OutcomeRefused || !errors.Is(err, ErrTryAfterCancel) || connectCode(t, err) != connect.CodeFailedPrecondition {
				t.Fatalf("Try after Cancel = (%d, %v)", out, err)
			}
		}
		out, err = e.b.Run(ctx, k, PhaseConfirm, c.fn("confirm"))
		if out != OutcomeRefused || !errors.Is(err, ErrAlreadyCancelled) {
			t.Fatalf("Confirm after Cancel = (%d, %v)", out, err)
		}
		if c.runs.Load() != 0 || len(e.effects(t)) != 0 {
			t.Fatalf("handler ran %d times, effects %v; want none", c.runs.Load(), e.effects(t))
		}
		// A Confirm without any Try is refused and records nothing.
		k2 := key("tx-2", "b2")
		out, err = e.b.Run(ctx, k2, PhaseConfirm, c.fn("confirm2"))
		if out != OutcomeRefused || !errors.Is(err, ErrConfirmWithoutTry) {
			t.Fatalf("Confirm without Try = (%d, %v)", out, err)
		}
		mustRun(t, e.b, k2, PhaseTry, c.fn("try2"), OutcomeExecuted)
		mustRun(t, e.b, k2, PhaseConfirm, c.fn("confirm2"), OutcomeExecuted)
	})
}

func TestTryRefusalIsRecorded(t *testing.T) {
	eachStore(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		var runs atomic.Int64
		refuse := func(ctx context.Context) error {
			runs.Add(1)
			if err := writeEffect(ctx, "partial"); err != nil {
				return err
			}
			return connect.NewError(connect.CodeFailedPrecondition, "insufficient funds")
		}
		k := key("tx-3", "b1")
		for i := range 3 {
			out, err := e.b.Run(ctx, k, PhaseTry, refuse)
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeFailedPrecondition || ce.Message() != "insufficient funds" {
				t.Fatalf("Try #%d = (%d, %v), want the refusal", i, out, err)
			}
			want := OutcomeReplayed
			if i == 0 {
				want = OutcomeFailed
			}
			if out != want {
				t.Fatalf("Try #%d outcome %d, want %d", i, out, want)
			}
		}
		if runs.Load() != 1 || len(e.effects(t)) != 0 {
			t.Fatalf("runs %d, effects %v; want 1 run and no effect", runs.Load(), e.effects(t))
		}
		var c counter
		out, err := e.b.Run(ctx, k, PhaseCancel, c.fn("cancel"))
		mustOutcome(t, out, err, OutcomeSkipped) // nothing was reserved
		out, err = e.b.Run(ctx, k, PhaseConfirm, c.fn("confirm"))
		if out != OutcomeRefused {
			t.Fatalf("Confirm of refused branch = (%d, %v)", out, err)
		}
		if c.runs.Load() != 0 {
			t.Fatal("compensation ran on a refused Try")
		}
	})
}

func TestHandlerFailureRollsBackBarrierRow(t *testing.T) {
	eachStore(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		var runs atomic.Int64
		fail := func(phase string) func(ctx context.Context) error {
			return func(ctx context.Context) error {
				runs.Add(1)
				if err := writeEffect(ctx, phase); err != nil {
					return err
				}
				return connect.NewError(connect.CodeUnavailable, "crash after the write")
			}
		}
		k := key("tx-4", "b1")
		rows := e.rows(t)
		out, err := e.b.Run(ctx, k, PhaseTry, fail("try"))
		if out != OutcomeFailed || connectCode(t, err) != connect.CodeUnavailable {
			t.Fatalf("failing Try = (%d, %v)", out, err)
		}
		if len(e.effects(t)) != 0 || e.rows(t) != rows {
			t.Fatalf("failed Try left effects %v and %d barrier rows", e.effects(t), e.rows(t)-rows)
		}
		var c counter
		mustRun(t, e.b, k, PhaseTry, c.fn("try"), OutcomeExecuted)
		out, err = e.b.Run(ctx, k, PhaseConfirm, fail("confirm"))
		if out != OutcomeFailed || connectCode(t, err) != connect.CodeUnavailable {
			t.Fatalf("failing Confirm = (%d, %v)", out, err)
		}
		// A failed Confirm is retried, not answered from the barrier.
		mustRun(t, e.b, k, PhaseConfirm, c.fn("confirm"), OutcomeExecuted)
		if got, want := e.effects(t), []string{"confirm", "try"}; !slices.Equal(got, want) {
			t.Fatalf("effects %v, want %v", got, want)
		}
		if runs.Load() != 2 || c.runs.Load() != 2 {
			t.Fatalf("runs %d/%d", runs.Load(), c.runs.Load())
		}
	})
}

func TestConcurrentDuplicates(t *testing.T) {
	const n = 8
	eachStore(t, nil, func(t *testing.T, e *env) {
		ctx := context.Background()
		for _, tc := range []struct {
			name     string
			barriers func() []Barrier
			exact    bool // the handler runs exactly once (one process, or SQL)
		}{
			{"one-process", func() []Barrier { return []Barrier{e.b} }, true},
			{"two-processes", func() []Barrier { return []Barrier{e.b, e.second()} }, e.name != "badger"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				bs := tc.barriers()
				k := key("tx-5-"+tc.name, "b1")
				var c counter
				var wg sync.WaitGroup
				outs := make([]Outcome, n)
				errs := make([]error, n)
				for i := range n {
					wg.Go(func() {
						outs[i], errs[i] = bs[i%len(bs)].Run(ctx, k, PhaseTry, c.fn("try-"+tc.name))
					})
				}
				wg.Wait()
				executed := 0
				for i := range n {
					if errs[i] != nil {
						t.Fatalf("call %d: %v", i, errs[i])
					}
					if outs[i] == OutcomeExecuted {
						executed++
					}
				}
				if executed != 1 {
					t.Fatalf("%d calls executed, want 1 (outcomes %v)", executed, outs)
				}
				if tc.exact && c.runs.Load() != 1 {
					t.Fatalf("handler ran %d times, want 1", c.runs.Load())
				}
				if got := e.effects(t); !slices.Contains(got, "try-"+tc.name) {
					t.Fatalf("effects %v", got)
				}
			})
		}
	})
}

func TestCleanup(t *testing.T) {
	eachStore(t, []Option{WithCleanupLimit(2)}, func(t *testing.T, e *env) {
		ctx := context.Background()
		var c counter
		e.clock.set(t0)
		// Finished at t0: confirmed, cancelled, and null-compensated.
		mustRun(t, e.b, key("old", "confirmed"), PhaseTry, c.fn("t1"), OutcomeExecuted)
		mustRun(t, e.b, key("old", "confirmed"), PhaseConfirm, c.fn("c1"), OutcomeExecuted)
		mustRun(t, e.b, key("old", "cancelled"), PhaseTry, c.fn("t2"), OutcomeExecuted)
		mustRun(t, e.b, key("old", "cancelled"), PhaseCancel, c.fn("x2"), OutcomeExecuted)
		out, err := e.b.Run(ctx, key("old", "null"), PhaseCancel, c.fn("x3"))
		mustOutcome(t, out, err, OutcomeSkipped)
		// Undecided at t0: tried only.
		mustRun(t, e.b, key("old", "tried"), PhaseTry, c.fn("t4"), OutcomeExecuted)
		// Finished recently.
		e.clock.set(t0.Add(6 * 24 * time.Hour))
		mustRun(t, e.b, key("new", "confirmed"), PhaseTry, c.fn("t5"), OutcomeExecuted)
		mustRun(t, e.b, key("new", "confirmed"), PhaseConfirm, c.fn("c5"), OutcomeExecuted)

		now := t0.Add(DefaultRetention + time.Hour)
		if n, err := e.b.Cleanup(ctx, t0.Add(DefaultRetention-time.Hour)); err != nil || n != 0 {
			t.Fatalf("early Cleanup = (%d, %v), want nothing", n, err)
		}
		total := 0
		for i := 0; i < 5; i++ {
			n, err := e.b.Cleanup(ctx, now)
			if err != nil {
				t.Fatal(err)
			}
			if n > 2 {
				t.Fatalf("Cleanup deleted %d branches, limit 2", n)
			}
			total += n
			if n == 0 {
				break
			}
		}
		if total != 3 {
			t.Fatalf("Cleanup deleted %d branches, want 3", total)
		}
		// Undecided and recent branches are still answered from the
		// barrier.
		out, err = e.b.Run(ctx, key("old", "tried"), PhaseTry, c.fn("again"))
		mustOutcome(t, out, err, OutcomeReplayed)
		out, err = e.b.Run(ctx, key("new", "confirmed"), PhaseConfirm, c.fn("again"))
		mustOutcome(t, out, err, OutcomeReplayed)
		if got := e.rows(t); got != rowsFor(e.name, 1, 1) {
			t.Fatalf("%d barrier rows left, want %d", got, rowsFor(e.name, 1, 1))
		}
	})
}

// rowsFor is the number of stored rows (Badger: keys) for tried-only and
// finished branches.
func rowsFor(store string, tried, finished int) int {
	if store == "badger" {
		return tried + 3*finished // try, end and time index
	}
	return tried + 2*finished
}

func TestRunRejectsBadKey(t *testing.T) {
	eachStore(t, nil, func(t *testing.T, e *env) {
		var c counter
		for _, k := range []BranchKey{{}, key("tx", ""), key("tx/../x", "b"), key(fmt.Sprint(make([]byte, MaxIDLen+1)), "b")} {
			out, err := e.b.Run(context.Background(), k, PhaseTry, c.fn("x"))
			if out != OutcomeFailed || connectCode(t, err) != connect.CodeInvalidArgument || !errors.Is(err, ErrBadHeader) {
				t.Fatalf("Run(%q) = (%d, %v)", k, out, err)
			}
		}
		if c.runs.Load() != 0 || e.rows(t) != 0 {
			t.Fatal("a bad key reached the handler or the store")
		}
	})
}

func TestHandlerPanicReleasesTransaction(t *testing.T) {
	eachStore(t, nil, func(t *testing.T, e *env) {
		k := key("tx-panic", "b1")
		func() {
			defer func() {
				if recover() == nil {
					t.Error("panic did not propagate")
				}
			}()
			_, _ = e.b.Run(context.Background(), k, PhaseTry, func(ctx context.Context) error {
				if err := writeEffect(ctx, "panicked"); err != nil {
					return err
				}
				panic("handler bug")
			})
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var c counter
		out, err := e.b.Run(ctx, k, PhaseTry, c.fn("after"))
		mustOutcome(t, out, err, OutcomeExecuted)
		if got := e.effects(t); !slices.Equal(got, []string{"after"}) {
			t.Fatalf("effects %v", got)
		}
	})
}
