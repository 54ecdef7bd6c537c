// Package tcc is Concord's TCC (Try-Confirm-Cancel) transactions: the
// participant side, a barrier that protects a service's Try, Confirm and
// Cancel handlers from duplicate, empty and hanging calls and the server
// interceptor that applies it; and the coordinator side, which logs,
// decides and finishes transactions and recovers those a crash left.
//
// # Wiring
//
// A Try method declares (concord.v1.tcc) = { confirm: "..." cancel: "..." }
// in its .proto; the generated policy table marks it. Build a barrier on
// the instance's Badger store (NewBadgerBarrier) or on the user's SQL
// database (NewSQLBarrier with SQLite or PostgreSQL), and put
// NewInterceptor(barrier, <Service>Policy()) in the TCC slot of the server
// chain with rpc.WithTCCParticipant. Handlers write through the local
// transaction they find in their context, BadgerTx(ctx) or SQLTx(ctx), and
// nothing else.
//
// Every Try, Confirm and Cancel call carries TxHeader and BranchHeader,
// each once, 1 to 128 bytes of [A-Za-z0-9._:-]. A missing, repeated or
// malformed header gets invalid_argument and reaches neither the handler
// nor the store. IDs reach the database only as bound SQL parameters and
// Badger keys only as a 128-bit SHA-256 digest.
//
// With WithTracerProvider the coordinator records a span per transaction
// with its phases (Try, then Confirm or Cancel) as children, and the
// participants' server spans (rpc.WithTracing) join that trace through the
// calls' headers.
//
// # Guarantees
//
// For each branch (transaction ID, branch ID) the barrier keeps at most two
// rows: the Try row (tried, refused with a code and message, or a guard left
// by a Cancel that came first) and the decision row (confirmed, cancelled,
// or cancelled without Try). Each row is inserted only if absent, in the
// same local transaction as the handler's writes, which commits only if
// the handler returned nil: the handler's effects and the barrier row are
// committed together or not at all. On that basis:
//
//   - Idempotency: a repeated Try, Confirm or Cancel of a phase that
//     committed is answered from its row without running the handler: the
//     same success, or for a Try the same refusal (code and message, the
//     message cut to 256 bytes, invalid UTF-8 replaced with U+FFFD, and in
//     a SQL store NUL bytes too, which PostgreSQL text cannot hold).
//   - Null compensation: a Cancel that finds no successful Try (none, or a
//     refused one) records the branch as cancelled and succeeds without
//     running the handler, so a coordinator that retries it is not stuck.
//   - Anti-hanging: a Try that finds its branch cancelled without a
//     successful Try is refused with failed_precondition (cause
//     ErrTryAfterCancel) and reserves nothing. failed_precondition, not
//     aborted, because retrying the Try can never succeed.
//   - Protocol violations are refused with failed_precondition and
//     recorded nowhere: a Confirm without a successful Try
//     (ErrConfirmWithoutTry), a Confirm after Cancel (ErrAlreadyCancelled),
//     a Cancel after Confirm (ErrAlreadyConfirmed).
//   - Concurrent duplicates: calls of one branch are serialized within a
//     process, so the handler runs once and the others replay. Across
//     processes sharing a SQL database the primary key does it: a second
//     insert waits for the first transaction and then finds its row (open
//     SQLite with a busy timeout and "_txlock=immediate"; on PostgreSQL
//     under REPEATABLE READ or SERIALIZABLE the wait ends in a
//     serialization failure instead, and the barrier runs the call again
//     in a new transaction, which finds the row). Across Badger
//     barriers on one store (only possible inside one process) optimistic
//     conflicts ensure one commit; the loser's handler may have run.
//
// # Failures
//
// A handler error rolls back everything, including the barrier row. What
// a repeat then gets depends on the phase and the error:
//
//   - A Try refused by the business (a *connect.Error with code
//     invalid_argument, not_found, already_exists, permission_denied,
//     failed_precondition or out_of_range) is recorded as refused in a
//     second local transaction, so that the repeat gets the same answer and
//     a later Cancel is a null compensation. Its writes stay rolled back.
//   - Any other Try error (unavailable, aborted, resource_exhausted,
//     deadline, internal, unknown, plain Go errors) is transient: nothing is
//     recorded and a repeat runs the handler again, which is safe because
//     nothing was committed. If recording a refusal fails, the same holds.
//   - Confirm and Cancel errors are never recorded: Confirm and Cancel must
//     eventually succeed, so the coordinator retries them and the handler
//     runs again. Recording their failures would make every retry fail.
//   - A barrier store failure gets unavailable (cause ErrStore) and
//     nothing is committed; an ended context gets canceled or
//     deadline_exceeded.
//
// The barrier serializes the calls of one branch, not those of different
// transactions that change the same business rows: a handler that reads a
// row and writes it back must lock it as any transaction must (SELECT ...
// FOR UPDATE on PostgreSQL at READ COMMITTED, or one conditional UPDATE);
// SQLite's immediate transactions and Badger's conflict detection already
// serialize them. The bank example's fault test lost updates on
// PostgreSQL until it did.
//
// The Badger store is optimistic: when the handler's transaction conflicts
// with another writer, the whole attempt (barrier check and handler) runs
// again, with the same request. A SQL store does the same, up to 5
// attempts, when the database aborts a barrier statement or the commit
// as a serialization failure or deadlock (SQLSTATE 40001, 40P01); an
// error of the handler's own statements is the handler's error. Handlers
// must therefore have no effects outside the local transaction.
//
// # Responses
//
// The handler's response is held back until the commit, so a caller never
// sees a success whose writes were rolled back. A call answered by the
// barrier without the handler (a repeat, or a null compensation) gets an
// empty response message of the method's output type. Responses are not
// stored: the coordinator uses only a phase's outcome (the generated
// TCCBranch functions discard the messages), and storing them would put
// business data of unbounded size in the barrier. A Try that must hand
// data to its Confirm should keep it in its own rows.
//
// Only unary methods can be TCC methods: a streaming one gets
// unimplemented.
//
// # Retention
//
// Cleanup deletes the rows of branches that were confirmed or cancelled
// more than the retention period ago (WithRetention, default 7 days), at
// most WithCleanupLimit branches per call (default 1000), oldest first.
// RunCleanup calls it every hour (and at once again while there is a
// backlog); a concord.App runs it for its local barrier, and a SQL
// barrier's owner runs it. Branches that were
// only tried are never deleted by retention: they are undecided, and the
// coordinator's recovery decides them, after which they age out. A
// duplicate that arrives after its branch's rows were deleted is not
// recognised (a late Try would run again), so the retention must exceed
// the longest time a call can be delayed or retried.
//
// # Coordinator
//
// Coordinator (and concord's App.TCC, which wraps one) runs transactions:
//
//	_, err := app.TCC(ctx, func(tx *tcc.Tx) error {
//		tx.Try(debit)  // generated <Service><Try>Branch(req)
//		tx.Try(credit)
//		return nil
//	})
//
// Run logs the transaction and its branches in the node's transaction log
// (package coord/txlog, the CONCORD_TXLOG stream, R3 in a cluster) before
// any Try, naming for each branch the participant instance that all its
// phases go to (rpc.WithInstance: a participant's barrier may be in its
// own store; an App keeps its instance ID across restarts). The Trys run
// concurrently; transient failures (unavailable, aborted,
// resource_exhausted, internal, unknown, an attempt's deadline) are
// retried with backoff until the transaction's timeout (DefaultTimeout,
// WithDefaultTimeout, WithTimeout); any other code is a refusal that
// cancels at once. The decision is a conditional write on the Trying
// record: it lands once, and a second writer (recovery) gets a conflict
// and follows the stored decision. Confirm or Cancel then runs on every
// branch, in rounds, retried with backoff (up to 5 s apart) until each
// succeeded; after a round with failures the branches' errors are written
// to the log. A finished transaction is removed from the log; a
// summary of it is kept for WithFinishedRetention (15 minutes by default)
// for concord status: of every cancelled or retried transaction, and of
// confirmed ones at most one per 50 ms per coordinator (each summary is a
// log write, and status lists the latest few).
//
// Run returns nil once commit is decided, after waiting for the Confirms
// until its context ends; a decided commit is always carried out (by Run's
// background rounds, or by recovery). A cancelled transaction returns a
// *connect.Error with the refusing Try's code and message, or
// deadline_exceeded for the timeout, whose cause is ErrCancelled. If the
// decision could not be stored or read back, Run returns unavailable with
// ErrUnknown: recovery finishes the transaction (cancel after its
// timeout, unless a commit decision had landed).
//
// # Recovery
//
// RunRecovery campaigns in RecoveryElection; the leader runs Recover,
// which watches the log for unfinished transactions. One left undecided
// two seconds past its deadline is decided cancel (conditionally, so a
// coordinator that decides at the same moment wins or loses cleanly) and
// cancelled; a decided one whose last record is older than WithStaleAfter
// (DefaultStaleAfter) is driven to its end. Every concord.App runs
// RunRecovery unless WithoutTCCRecovery, so a killed coordinator's
// transactions are finished by any other App, or by itself after a
// restart. Deadlines and staleness compare this machine's clock with the
// coordinator's (deadline) and the server's (record time): keep clocks in
// sync to well under the stale period.
//
// Participants never time out a reservation on their own: a branch stays
// reserved until the coordinator or recovery decides, which is at most
// the transaction's timeout plus recovery's reaction time (an election
// TTL if the recovery leader died, plus the 2 s grace) while the
// coordination node is reachable.
//
// # Tests
//
// Every barrier behaviour test runs on Badger, SQLite and a real
// PostgreSQL server: the one named by CONCORD_TEST_POSTGRES, which .ci/run
// starts (.ci/postgres.sh). Without the variable the PostgreSQL cases are
// skipped.
package tcc
