package tcc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect/v2"
)

// Phase is the TCC phase of a participant call.
type Phase uint8

// The phases of a branch.
const (
	// PhaseTry reserves resources.
	PhaseTry Phase = iota + 1
	// PhaseConfirm uses the reservation.
	PhaseConfirm
	// PhaseCancel releases the reservation.
	PhaseCancel
)

// String returns "try", "confirm" or "cancel".
func (p Phase) String() string {
	switch p {
	case PhaseTry:
		return "try"
	case PhaseConfirm:
		return "confirm"
	case PhaseCancel:
		return "cancel"
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

// Outcome says how Barrier.Run answered a call.
type Outcome uint8

// The outcomes of Barrier.Run.
const (
	// OutcomeFailed: nothing was committed. The error is the handler's
	// error, or an unavailable error when the store failed.
	OutcomeFailed Outcome = iota
	// OutcomeExecuted: the handler ran and its writes committed together
	// with the barrier row; the error is nil.
	OutcomeExecuted
	// OutcomeReplayed: the phase had already been answered; the error is
	// the stored answer (nil for success) and the handler did not run.
	OutcomeReplayed
	// OutcomeSkipped: a Cancel without a successful Try (null
	// compensation) was recorded as cancelled; the handler did not run and
	// the error is nil.
	OutcomeSkipped
	// OutcomeRefused: the call breaks the protocol (a Try after its Cancel,
	// a Confirm without a successful Try, a Confirm after Cancel or the
	// reverse); nothing was written and the error is a failed_precondition
	// *connect.Error whose cause is one of the Err sentinels below.
	OutcomeRefused
)

// Errors that are the causes of refusals (errors.Is on the server side;
// callers see the code and message).
var (
	// ErrTryAfterCancel refuses a Try that arrives after its branch was
	// cancelled (a hanging Try): it must not reserve anything.
	ErrTryAfterCancel = errors.New("tcc: try after cancel")
	// ErrConfirmWithoutTry refuses a Confirm of a branch whose Try did not
	// succeed.
	ErrConfirmWithoutTry = errors.New("tcc: confirm without a successful try")
	// ErrAlreadyCancelled refuses a Confirm of a cancelled branch.
	ErrAlreadyCancelled = errors.New("tcc: branch already cancelled")
	// ErrAlreadyConfirmed refuses a Cancel of a confirmed branch.
	ErrAlreadyConfirmed = errors.New("tcc: branch already confirmed")
	// ErrStore is the cause of the unavailable error returned when the
	// barrier store fails; nothing was committed.
	ErrStore = errors.New("tcc: barrier store failed")
)

// Barrier runs participant handlers inside a local transaction that also
// records the branch's phase, so that duplicate, empty and hanging calls are
// answered without running the handler (see the package doc). BadgerBarrier
// and SQLBarrier implement it; both are safe for concurrent use.
type Barrier interface {
	// Run runs fn for phase of branch k inside one local transaction with
	// the barrier row, unless the barrier answers the call itself (see
	// Outcome). fn's ctx carries the local transaction (BadgerTx, SQLTx).
	// fn may run more than once if the store retries a conflicting
	// transaction, but its writes commit at most once; it must have no
	// effects outside the transaction.
	Run(ctx context.Context, k BranchKey, phase Phase, fn func(ctx context.Context) error) (Outcome, error)
	// Cleanup deletes the barrier rows of branches that were confirmed or
	// cancelled before now minus the retention period, at most the cleanup
	// limit of them per call, oldest first, and returns how many branches
	// it deleted. Branches that were only tried are never deleted.
	Cleanup(ctx context.Context, now time.Time) (int, error)
}

// slot is one of the two barrier rows of a branch.
type slot byte

const (
	slotTry slot = 't' // the Try's outcome, or the guard a Cancel leaves
	slotEnd slot = 'e' // the decision: confirmed or cancelled
)

// state is what a barrier row records.
type state uint8

const (
	stateTried         state = iota + 1 // try: Try succeeded
	stateTryRefused                     // try: Try refused by the handler (code, message)
	stateGuard                          // try: Cancel came first; a later Try is refused
	stateConfirmed                      // end: Confirm succeeded
	stateCancelled                      // end: Cancel ran the compensation
	stateCancelledNull                  // end: Cancel without successful Try (null compensation)
)

// maxMessage bounds a stored refusal message, in bytes.
const maxMessage = 256

// record is one barrier row.
type record struct {
	State   state
	Code    connect.Code // stateTryRefused only
	Message string       // stateTryRefused only, at most maxMessage bytes
	At      int64        // creation time, Unix nanoseconds
}

// localTx is the barrier's view of one local transaction.
type localTx interface {
	// insert writes r under (k, s) unless a row exists there; inserted
	// reports which.
	insert(ctx context.Context, k BranchKey, s slot, r record) (inserted bool, err error)
	// get reads the row under (k, s).
	get(ctx context.Context, k BranchKey, s slot) (r record, ok bool, err error)
}

// txRunner runs body in a new local transaction, passing a context that
// carries it, and commits if body returns nil.
type txRunner func(ctx context.Context, body func(ctx context.Context, tx localTx) error) error

// errRollback makes a txRunner roll back without being a store failure.
var errRollback = errors.New("tcc: roll back")

// isRefusal reports whether a Try handler's error is a business refusal,
// which the barrier records so that a repeated Try gets the same answer:
// a *connect.Error with a code that says the request itself cannot succeed.
// Other errors (unavailable, aborted, resource_exhausted, deadline,
// internal, unknown, plain Go errors) are treated as transient and not
// recorded: a repeat runs the handler again.
func isRefusal(err error) (code connect.Code, msg string, ok bool) {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return 0, "", false
	}
	switch ce.Code() {
	case connect.CodeInvalidArgument, connect.CodeNotFound, connect.CodeAlreadyExists,
		connect.CodePermissionDenied, connect.CodeFailedPrecondition, connect.CodeOutOfRange:
		return ce.Code(), truncate(ce.Message(), maxMessage), true
	}
	return 0, "", false
}

// truncate cuts s to at most n bytes on a rune boundary and replaces
// invalid UTF-8.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

func refuse(cause error, k BranchKey) error {
	return connect.NewError(connect.CodeFailedPrecondition,
		fmt.Sprintf("%v (transaction %s, branch %s)", cause, k.TxID, k.BranchID)).WithCause(cause)
}

// verdict is decide's answer: run the handler, or answer without it and
// commit (answer nil) or roll back (answer non-nil).
type verdict struct {
	run     bool
	outcome Outcome
	answer  error
}

// decide reads and writes the barrier rows of k for phase in tx. Rows are
// always inserted before they are relied on, so that a concurrent
// duplicate waits on (SQL) or conflicts with (Badger) the unique row.
func decide(ctx context.Context, tx localTx, k BranchKey, phase Phase, at int64) (verdict, error) {
	switch phase {
	case PhaseTry:
		ins, err := tx.insert(ctx, k, slotTry, record{State: stateTried, At: at})
		if err != nil || ins {
			return verdict{run: true}, err
		}
		r, err := mustGet(ctx, tx, k, slotTry)
		if err != nil {
			return verdict{}, err
		}
		switch r.State {
		case stateTried:
			return verdict{outcome: OutcomeReplayed}, nil
		case stateTryRefused:
			return verdict{outcome: OutcomeReplayed, answer: connect.NewError(r.Code, r.Message)}, nil
		}
		return verdict{outcome: OutcomeRefused, answer: refuse(ErrTryAfterCancel, k)}, nil

	case PhaseConfirm:
		ins, err := tx.insert(ctx, k, slotEnd, record{State: stateConfirmed, At: at})
		if err != nil {
			return verdict{}, err
		}
		if !ins {
			return replayEnd(ctx, tx, k, stateConfirmed)
		}
		r, ok, err := tx.get(ctx, k, slotTry)
		if err != nil {
			return verdict{}, err
		}
		if !ok || r.State != stateTried {
			return verdict{outcome: OutcomeRefused, answer: refuse(ErrConfirmWithoutTry, k)}, nil
		}
		return verdict{run: true}, nil

	case PhaseCancel:
		// The guard goes in first: a Try that is running holds (SQL) or
		// will conflict on (Badger) the try row, and a later Try finds it.
		ins, err := tx.insert(ctx, k, slotTry, record{State: stateGuard, At: at})
		if err != nil {
			return verdict{}, err
		}
		tried := false
		if !ins {
			r, err := mustGet(ctx, tx, k, slotTry)
			if err != nil {
				return verdict{}, err
			}
			tried = r.State == stateTried
		}
		st := stateCancelledNull
		if tried {
			st = stateCancelled
		}
		ins, err = tx.insert(ctx, k, slotEnd, record{State: st, At: at})
		if err != nil {
			return verdict{}, err
		}
		if !ins {
			return replayEnd(ctx, tx, k, stateCancelled)
		}
		if !tried {
			return verdict{outcome: OutcomeSkipped}, nil
		}
		return verdict{run: true}, nil
	}
	return verdict{}, fmt.Errorf("tcc: unknown phase %d", phase)
}

// replayEnd answers a Confirm (want stateConfirmed) or Cancel (want
// stateCancelled) whose decision row exists.
func replayEnd(ctx context.Context, tx localTx, k BranchKey, want state) (verdict, error) {
	r, err := mustGet(ctx, tx, k, slotEnd)
	if err != nil {
		return verdict{}, err
	}
	confirmed := r.State == stateConfirmed
	switch {
	case confirmed == (want == stateConfirmed):
		return verdict{outcome: OutcomeReplayed}, nil
	case confirmed:
		return verdict{outcome: OutcomeRefused, answer: refuse(ErrAlreadyConfirmed, k)}, nil
	}
	return verdict{outcome: OutcomeRefused, answer: refuse(ErrAlreadyCancelled, k)}, nil
}

func mustGet(ctx context.Context, tx localTx, k BranchKey, s slot) (record, error) {
	r, ok, err := tx.get(ctx, k, s)
	if err == nil && !ok {
		err = fmt.Errorf("tcc: barrier row %c vanished inside its transaction", s)
	}
	return r, err
}

// run is Barrier.Run on a store given by begin.
func run(ctx context.Context, cfg *config, begin txRunner, k BranchKey, phase Phase, fn func(ctx context.Context) error) (Outcome, error) {
	if err := k.Validate(); err != nil {
		return OutcomeFailed, connect.NewError(connect.CodeInvalidArgument, err.Error()).WithCause(err)
	}
	var (
		v          verdict
		handlerErr error
	)
	err := begin(ctx, func(ctx context.Context, tx localTx) error {
		// Reset: the store may run this body more than once.
		handlerErr = nil
		var err error
		v, err = decide(ctx, tx, k, phase, cfg.now().UnixNano())
		switch {
		case err != nil:
			return err
		case !v.run && v.answer != nil:
			return errRollback
		case !v.run:
			return nil
		}
		if err := fn(ctx); err != nil {
			handlerErr = err
			return errRollback
		}
		v.outcome = OutcomeExecuted
		return nil
	})
	switch {
	case handlerErr != nil && errors.Is(err, errRollback):
		if phase == PhaseTry {
			if code, msg, ok := isRefusal(handlerErr); ok {
				// Recorded in a transaction of its own, as the handler's
				// writes were rolled back. If this fails, a repeat runs the
				// handler again, which is safe: nothing was committed.
				err := begin(ctx, func(ctx context.Context, tx localTx) error {
					_, err := tx.insert(ctx, k, slotTry, record{State: stateTryRefused, Code: code, Message: msg, At: cfg.now().UnixNano()})
					return err
				})
				if err != nil {
					cfg.logger.WarnContext(ctx, "tcc: could not record a refused try; a repeat will run it again",
						"tx", k.TxID, "branch", k.BranchID, "error", err)
				}
			}
		}
		return OutcomeFailed, handlerErr
	case errors.Is(err, errRollback):
		return v.outcome, v.answer
	case err != nil:
		if ce := ctxErr(ctx); ce != nil {
			return OutcomeFailed, ce
		}
		return OutcomeFailed, connect.NewError(connect.CodeUnavailable, ErrStore.Error()).WithCause(fmt.Errorf("%w: %w", ErrStore, err))
	}
	return v.outcome, v.answer
}

// ctxErr maps an ended context to its connect error.
func ctxErr(ctx context.Context) error {
	switch {
	case ctx.Err() == nil:
		return nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, "tcc: deadline exceeded").WithCause(ctx.Err())
	}
	return connect.NewError(connect.CodeCanceled, "tcc: call canceled").WithCause(ctx.Err())
}

// codeOf turns a stored code back into a connect.Code; an out-of-range
// value (a corrupt row) becomes unknown.
func codeOf(c uint32) connect.Code {
	if c < uint32(connect.CodeCanceled) || c > uint32(connect.CodeUnauthenticated) {
		return connect.CodeUnknown
	}
	return connect.Code(c)
}
