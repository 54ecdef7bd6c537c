package tcc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"
	"go.opentelemetry.io/otel/trace"

	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/coord/txlog"
	"github.com/concordrpc/concord/internal/wait"
	"github.com/concordrpc/concord/rpc"
)

// Defaults of the coordinator.
const (
	// DefaultTimeout bounds how long a transaction's branches may stay
	// reserved without a decision: the Trys must all succeed within it,
	// and recovery cancels a transaction left undecided past it.
	DefaultTimeout = 30 * time.Second
	// DefaultStaleAfter is how long recovery leaves a decided transaction
	// to its coordinator: it drives one whose log record is older.
	DefaultStaleAfter = 15 * time.Second
)

// Errors of Run. Each is the cause inside a *connect.Error, so that a
// handler can return Run's error to its own caller as it is.
var (
	// ErrCancelled: the transaction was decided cancel (a Try refused,
	// failed past the timeout, or the caller gave up); every branch is
	// cancelled or being cancelled.
	ErrCancelled = errors.New("tcc: transaction cancelled")
	// ErrUnknown: the decision could not be stored or read back. Nothing
	// is lost: recovery finishes the transaction (cancels it after its
	// timeout, unless a commit decision landed).
	ErrUnknown = errors.New("tcc: transaction outcome unknown")
)

// Coordinator runs TCC transactions: it logs each transaction and its
// branches in the node's transaction log (coord/txlog) before the first
// Try, runs the Trys, stores the decision as a conditional write that
// never changes once made, drives Confirm or Cancel on every branch until
// each succeeds, and ends the transaction in the log. Recover finishes
// what a crashed coordinator left. It is safe for concurrent use.
type Coordinator struct {
	backend lock.Backend
	conn    rpc.ClientConn
	res     rpc.Resolver
	cfg     coordConfig

	clients sync.Map // discovery name -> *connect.Client

	ctx    context.Context // ends at Close: background phases stop
	cancel context.CancelFunc
	wg     sync.WaitGroup

	lastSummary atomic.Int64 // unix nanoseconds of the last confirmed transaction's summary
}

// summaryInterval spaces the summaries of transactions that were
// confirmed at the first attempt: concord status lists the latest few, so
// under load one in 50 ms is plenty, and each summary is a log write.
const summaryInterval = 50 * time.Millisecond

// summaryRetention is the retention for fin's summary in the log, or -1
// for none: every cancelled or retried transaction keeps one; confirmed
// ones at most one per summaryInterval per coordinator.
func (c *Coordinator) summaryRetention(fin *txlog.Record) time.Duration {
	if fin.State == txlog.StateCancelled || fin.Attempts > 0 {
		return c.cfg.retention
	}
	now, last := time.Now().UnixNano(), c.lastSummary.Load()
	if now-last < int64(summaryInterval) || !c.lastSummary.CompareAndSwap(last, now) {
		return -1
	}
	return c.cfg.retention
}

// NewCoordinator returns a coordinator that logs on backend's node and
// reaches participants through conn, choosing each branch's instance with
// res (an App is all three: concord's App.TCC uses one). Close it when
// done.
func NewCoordinator(backend lock.Backend, conn rpc.ClientConn, res rpc.Resolver, opts ...CoordinatorOption) *Coordinator {
	cfg := coordConfig{timeout: DefaultTimeout, staleAfter: DefaultStaleAfter, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o.applyCoord(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Coordinator{backend: backend, conn: conn, res: res, cfg: cfg, ctx: ctx, cancel: cancel}
}

// Close stops the phases that Run left running in the background (their
// transactions stay in the log for recovery) and waits for them.
func (c *Coordinator) Close() error {
	c.cancel()
	c.wg.Wait()
	return nil
}

// Tx collects the branches of a transaction inside Run's function.
type Tx struct {
	id       string
	branches []txlog.Branch
	err      error
}

// ID returns the transaction ID.
func (tx *Tx) ID() string { return tx.id }

// Try adds a branch: its Try runs once the function returns, concurrently
// with the other branches' Trys. A branch with a missing service or
// procedure makes Run fail before anything is logged.
func (tx *Tx) Try(b rpc.TCCBranch) {
	id := "b" + strconv.Itoa(len(tx.branches)+1)
	if b.Service == "" || b.Try == "" || b.Confirm == "" || b.Cancel == "" {
		tx.err = errors.Join(tx.err, fmt.Errorf("tcc: branch %s lacks its service or a procedure: %+v", id, b))
	}
	tx.branches = append(tx.branches, txlog.Branch{
		ID: id, Service: b.Service, Try: b.Try, Confirm: b.Confirm, Cancel: b.Cancel, Request: b.Request,
	})
}

// Result is what Run reports of a transaction.
type Result struct {
	// ID is the transaction ID ("" if nothing was logged).
	ID string
	// State is the last state Run saw: confirmed or cancelled when the
	// phase finished within Run, confirming or cancelling when it goes on
	// in the background (and in recovery), trying when unknown.
	State txlog.State
}

// Run runs one transaction. fn adds its branches with tx.Try (and must
// not call anything else with side effects: its effects are not part of
// the transaction); if fn fails, nothing is logged or called and Run
// returns fn's error.
//
// Run logs the transaction, picks an instance of each branch's service
// (all of the branch's phases go to it: participants may keep their
// barrier in their own store) and runs the Trys concurrently. A Try that
// fails transiently (unavailable, aborted, resource_exhausted, internal,
// unknown, a timed-out attempt) is retried with backoff until the
// transaction's timeout; a refusal (any other code) cancels at once. The
// decision is commit when every Try succeeded, else cancel.
//
// Run returns nil when the decision is commit: every branch will be
// confirmed, by Run, by its background retries, or by recovery. It
// waits for the Confirms until ctx ends. Otherwise it returns a
// *connect.Error whose cause is ErrCancelled (with the refusing Try's code
// and message, or deadline_exceeded for the timeout) or ErrUnknown
// (unavailable).
func (c *Coordinator) Run(ctx context.Context, fn func(tx *Tx) error, opts ...TxOption) (Result, error) {
	if c.cfg.tracer == nil {
		return c.run(ctx, fn, opts)
	}
	ctx, span := c.cfg.tracer.Start(ctx, "tcc.Transaction")
	res, err := c.run(ctx, fn, opts)
	if span.IsRecording() {
		span.SetAttributes(attrTxID.String(res.ID), attrState.String(string(res.State)))
	}
	endSpan(span, err)
	return res, err
}

func (c *Coordinator) run(ctx context.Context, fn func(tx *Tx) error, opts []TxOption) (Result, error) {
	tc := txConfig{timeout: c.cfg.timeout}
	for _, o := range opts {
		o.applyTx(&tc)
	}
	tx := &Tx{id: txlog.NewID()}
	if err := fn(tx); err != nil {
		return Result{}, err
	}
	if tx.err != nil {
		return Result{}, codeError(connect.CodeInvalidArgument, tx.err)
	}
	if len(tx.branches) == 0 {
		return Result{}, codeError(connect.CodeInvalidArgument, errors.New("tcc: transaction without branches"))
	}
	now := time.Now()
	rec := &txlog.Record{
		ID: tx.id, State: txlog.StateTrying, Branches: tx.branches, Coordinator: c.cfg.name,
		Created: now, Deadline: now.Add(tc.timeout),
	}
	tctx, cancel := context.WithDeadline(ctx, rec.Deadline)
	defer cancel()
	// Pick each branch's instance before logging, so the log names where
	// its Try may have gone.
	for i := range rec.Branches {
		b := &rec.Branches[i]
		ins, err := c.res.Resolve(tctx, b.Service)
		if err != nil || len(ins) == 0 {
			return Result{}, codeError(connect.CodeUnavailable, fmt.Errorf("tcc: no instance of %s: %w", b.Service, err))
		}
		b.Instance = ins[rand.IntN(len(ins))].ID
	}
	node, err := c.backend.Node(tctx)
	if err != nil {
		return Result{}, codeError(connect.CodeUnavailable, fmt.Errorf("tcc: coordination: %w", err))
	}
	log := txlog.Open(node)
	if err := log.Begin(tctx, rec); err != nil {
		// Not written, or unclear: no Try has run; recovery cancels a
		// record that did land, as a null compensation.
		return Result{}, codeError(connect.CodeUnavailable, fmt.Errorf("tcc: log transaction: %w", err))
	}
	trySpan := noSpan
	if c.cfg.tracer != nil {
		trace.SpanFromContext(ctx).SetAttributes(attrTxID.String(rec.ID), attrBranches.Int(len(rec.Branches)))
		tctx, trySpan = c.startPhase(tctx, PhaseTry, rec.ID)
	}
	refusal := c.tryAll(tctx, rec)
	endSpan(trySpan, refusal)
	commit := refusal == nil
	// The decision is stored even when the caller has gone.
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer dcancel()
	decided, err := c.decide(dctx, log, rec, commit, refusal)
	if err != nil {
		c.cfg.logger.Warn("tcc: decision not stored; recovery finishes the transaction",
			slog.String("tx", rec.ID), slog.Any("error", err))
		return Result{ID: rec.ID, State: txlog.StateTrying},
			codeError(connect.CodeUnavailable, fmt.Errorf("%w: %s: %w", ErrUnknown, rec.ID, err))
	}
	res := Result{ID: rec.ID, State: decided.State}
	if end, ok := c.driveWithin(ctx, decided); ok {
		res.State = end
	}
	if decided.State == txlog.StateConfirming {
		return res, nil
	}
	return res, cancelError(rec.ID, decided.Cause, refusal)
}

// tryAll runs every branch's Try and returns nil when all succeeded, else
// the first refusal or the error that ended the retries.
func (c *Coordinator) tryAll(ctx context.Context, rec *txlog.Record) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for i := range rec.Branches {
		b := rec.Branches[i]
		wg.Go(func() {
			err := c.try(ctx, rec.ID, b)
			if err == nil {
				return
			}
			mu.Lock()
			if first == nil {
				first = &branchError{branch: b, err: err}
				cancel(first)
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return first
}

// try runs one branch's Try, retrying transient failures until ctx ends.
func (c *Coordinator) try(ctx context.Context, txID string, b txlog.Branch) error {
	for attempt := 0; ; attempt++ {
		err := c.call(ctx, txID, b, PhaseTry)
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		if !wait.Sleep(ctx, wait.Backoff(attempt, 50*time.Millisecond, time.Second)) {
			return err
		}
	}
}

// call makes one phase's call of branch b of transaction txID.
func (c *Coordinator) call(ctx context.Context, txID string, b txlog.Branch, phase Phase) error {
	client, _ := c.clients.Load(b.Service)
	if client == nil {
		client, _ = c.clients.LoadOrStore(b.Service, c.conn.Client(&rpc.ServicePolicy{Name: b.Service, DiscoveryName: b.Service}))
	}
	if b.Instance != "" {
		ctx = rpc.WithInstance(ctx, b.Instance)
	}
	branch := rpc.TCCBranch{Service: b.Service, Try: b.Try, Confirm: b.Confirm, Cancel: b.Cancel, Request: b.Request}
	start := time.Now()
	err := Invoke(ctx, client.(*connect.Client), branch, phase, BranchKey{TxID: txID, BranchID: b.ID})
	if c.cfg.hook != nil {
		r := PhaseReport{Service: b.Service, Procedure: procedureOf(b, phase), Phase: phase, Duration: time.Since(start)}
		if err != nil {
			r.Code = connect.CodeOf(err)
		}
		c.cfg.hook(r)
	}
	return err
}

// decide stores the decision on rec (which must be the trying record) and
// returns the decided record: rec's own, or, when another writer
// (recovery) decided first, theirs.
func (c *Coordinator) decide(ctx context.Context, log *txlog.Log, rec *txlog.Record, commit bool, cause error) (*txlog.Record, error) {
	d := rec.Clone()
	d.State = txlog.StateCancelling
	if commit {
		d.State = txlog.StateConfirming
	} else if cause != nil {
		d.Cause = cause.Error()
	}
	err := log.Update(ctx, d)
	if err == nil {
		return d, nil
	}
	if !errors.Is(err, txlog.ErrConflict) {
		return nil, err
	}
	cur, gerr := log.Get(ctx, rec.ID)
	if gerr != nil {
		if errors.Is(gerr, txlog.ErrNotFound) {
			// Decided and finished by another writer already: only
			// recovery decides for others, and it decides cancel.
			d.State, d.Cause = txlog.StateCancelled, "cancelled by recovery"
			return d, nil
		}
		return nil, gerr
	}
	if cur.State == txlog.StateTrying {
		return nil, fmt.Errorf("tcc: conflict on %s but no decision stored", rec.ID)
	}
	return cur, nil
}

// driveWithin drives the decided phase in the background and waits for it
// until ctx ends. It reports the end state if the phase finished.
func (c *Coordinator) driveWithin(ctx context.Context, rec *txlog.Record) (txlog.State, bool) {
	if rec.State.Finished() {
		return rec.State, true
	}
	done := make(chan txlog.State, 1)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		// done hears of the end as soon as every branch's phase
		// succeeded; the end's log write follows without the caller.
		dctx := c.ctx
		if c.cfg.tracer != nil { // the phase's span goes under the transaction's
			dctx = trace.ContextWithSpan(dctx, trace.SpanFromContext(ctx))
		}
		if _, err := c.drive(dctx, rec, func(end txlog.State) { done <- end }); err != nil {
			close(done)
		}
	}()
	select {
	case end, ok := <-done:
		return end, ok
	case <-ctx.Done():
		return "", false
	}
}

// drive runs the decided phase (Confirm or Cancel) of every branch of rec
// not yet done, in rounds, until each succeeded, calls phased (if not nil)
// with the end state, and finishes the transaction in the log. After a
// round with failures it records the branches' errors in the log (for
// status, and so that recovery sees the coordinator alive) and waits with
// backoff. It stops when ctx ends or another writer changed the record in
// a way that leaves nothing to do. A finish that is not logged leaves the
// transaction to recovery, which repeats the (idempotent) phase.
func (c *Coordinator) drive(ctx context.Context, rec *txlog.Record, phased func(txlog.State)) (_ txlog.State, err error) {
	phase, end := PhaseConfirm, txlog.StateConfirmed
	if rec.State == txlog.StateCancelling {
		phase, end = PhaseCancel, txlog.StateCancelled
	}
	ctx, span := c.startPhase(ctx, phase, rec.ID)
	defer func() { endSpan(span, err) }()
	node, err := c.backend.Node(ctx)
	if err != nil {
		return "", err
	}
	log := txlog.Open(node)
	rec = rec.Clone()
	for round := 0; ; round++ {
		errs := make([]error, len(rec.Branches))
		var wg sync.WaitGroup
		for i := range rec.Branches {
			if rec.Branches[i].Done {
				continue
			}
			b := rec.Branches[i]
			wg.Go(func() {
				actx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				errs[i] = c.call(actx, rec.ID, b, phase)
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		failed := 0
		for i, err := range errs {
			b := &rec.Branches[i]
			switch {
			case b.Done:
			case err == nil:
				b.Done, b.Error = true, ""
			default:
				failed++
				b.Error = err.Error()
				c.cfg.logger.Warn("tcc: phase failed; retrying", slog.String("tx", rec.ID), slog.String("branch", b.ID),
					slog.String("phase", phase.String()), slog.String("procedure", procedureOf(*b, phase)), slog.Any("error", err))
			}
		}
		if failed == 0 {
			if phased != nil {
				phased(end)
			}
			fin := rec.Clone()
			fin.State = end
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := log.Finish(wctx, fin, c.summaryRetention(fin))
			cancel()
			if err != nil && !errors.Is(err, txlog.ErrConflict) {
				// Every branch is done; a later recovery repeats the
				// (idempotent) phase and finishes it.
				c.cfg.logger.Warn("tcc: finish not logged", slog.String("tx", rec.ID), slog.Any("error", err))
			}
			return end, nil
		}
		rec.Attempts++
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := log.Update(wctx, rec)
		cancel()
		if errors.Is(err, txlog.ErrConflict) {
			// Another writer (recovery) progressed it: continue from its
			// record, keeping what we know is done.
			cur, gerr := log.Get(ctx, rec.ID)
			if errors.Is(gerr, txlog.ErrNotFound) {
				if phased != nil {
					phased(end)
				}
				return end, nil
			}
			if gerr == nil && cur.State == rec.State {
				for i := range cur.Branches {
					cur.Branches[i].Done = cur.Branches[i].Done || rec.Branches[i].Done
				}
				rec = cur
			}
		}
		if !wait.Sleep(ctx, wait.Backoff(round, 50*time.Millisecond, 5*time.Second)) {
			return "", ctx.Err()
		}
	}
}

func procedureOf(b txlog.Branch, p Phase) string {
	switch p {
	case PhaseTry:
		return b.Try
	case PhaseConfirm:
		return b.Confirm
	}
	return b.Cancel
}

// branchError is a Try's failure that decided a cancel.
type branchError struct {
	branch txlog.Branch
	err    error
}

func (e *branchError) Error() string {
	var ce *connect.Error
	if errors.As(e.err, &ce) {
		return fmt.Sprintf("branch %s (%s) failed with %s: %s", e.branch.ID, e.branch.Try, ce.Code(), ce.Message())
	}
	return fmt.Sprintf("branch %s (%s) failed: %v", e.branch.ID, e.branch.Try, e.err)
}

func (e *branchError) Unwrap() error { return e.err }

// cancelError is Run's error for a cancelled transaction: the refusing
// Try's code and message, or deadline_exceeded for a timeout.
func cancelError(id, cause string, refusal error) error {
	code := connect.CodeAborted
	var ce *connect.Error
	switch {
	case errors.As(refusal, &ce) && !transient(ce):
		code = ce.Code()
	case errors.Is(refusal, context.DeadlineExceeded), connect.CodeOf(refusal) == connect.CodeDeadlineExceeded:
		code = connect.CodeDeadlineExceeded
	case refusal != nil:
		code = connect.CodeOf(refusal)
	}
	msg := cause
	if refusal != nil {
		msg = refusal.Error()
	}
	return codeError(code, fmt.Errorf("%w: %s: %s", ErrCancelled, id, msg))
}

// codeError is a *connect.Error with err's text and err as its cause.
func codeError(code connect.Code, err error) *connect.Error {
	return connect.NewError(code, err.Error()).WithCause(err)
}

// transient reports whether a phase's failure may succeed when repeated.
func transient(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeAborted, connect.CodeResourceExhausted, connect.CodeInternal,
		connect.CodeUnknown, connect.CodeDeadlineExceeded:
		return true
	}
	return false
}
