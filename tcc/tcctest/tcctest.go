package tcctest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/concordrpc/concord/rpc"
	"github.com/concordrpc/concord/tcc"
)

// Effect is what a branch has done to the participant's state, as the
// participant's own State function sees it.
type Effect int

// The effects of a branch.
const (
	// EffectNone: nothing is reserved or applied (never tried, refused,
	// or cancelled).
	EffectNone Effect = iota
	// EffectReserved: the Try's reservation is held, once.
	EffectReserved
	// EffectConfirmed: the branch is applied, once.
	EffectConfirmed
	// EffectBroken: anything else, such as a reservation applied twice or
	// released twice. State returns it to fail the test.
	EffectBroken
)

func (e Effect) String() string {
	switch e {
	case EffectNone:
		return "none"
	case EffectReserved:
		return "reserved"
	case EffectConfirmed:
		return "confirmed"
	}
	return "broken"
}

// Participant is the participant under test.
type Participant struct {
	// Client reaches the participant's service with the binary protobuf
	// codec (for example rpc.NewConn(url).Client(<Service>Policy())). Run
	// asks for it before each call, so that Restart can replace it.
	Client func() *connect.Client
	// Branch returns a new branch whose Try succeeds (for example a debit
	// from a fresh account with enough money). Each call must return an
	// independent branch, so that the cases do not see each other.
	Branch func(t *testing.T) rpc.TCCBranch
	// Refused returns a new branch whose Try the participant refuses with
	// a business error (for example insufficient funds). Nil skips the
	// refusal case.
	Refused func(t *testing.T) rpc.TCCBranch
	// State reports the effect of branch b on the participant's state.
	State func(t *testing.T, b rpc.TCCBranch) Effect
	// Restart stops the participant as a crash would leave it and starts
	// it again on the same store. Nil skips the crash cases.
	Restart func(t *testing.T)
}

// step is one call of a case and what it must answer.
type step struct {
	phase tcc.Phase
	code  connect.Code // 0: success
}

// Run runs every case as a subtest of t, each on fresh branches.
func Run(t *testing.T, p Participant) {
	t.Helper()
	ok := func(ph tcc.Phase) step { return step{phase: ph} }
	refused := func(ph tcc.Phase) step { return step{phase: ph, code: connect.CodeFailedPrecondition} }
	cases := []struct {
		name  string
		steps []step
		want  Effect
	}{
		{"TryTwice", []step{ok(tcc.PhaseTry), ok(tcc.PhaseTry)}, EffectReserved},
		{"ConfirmTwice", []step{ok(tcc.PhaseTry), ok(tcc.PhaseConfirm), ok(tcc.PhaseConfirm), ok(tcc.PhaseTry)}, EffectConfirmed},
		{"CancelTwice", []step{ok(tcc.PhaseTry), ok(tcc.PhaseCancel), ok(tcc.PhaseCancel)}, EffectNone},
		{"CancelBeforeTry", []step{ok(tcc.PhaseCancel), refused(tcc.PhaseTry), ok(tcc.PhaseCancel)}, EffectNone},
		{"ConfirmWithoutTry", []step{refused(tcc.PhaseConfirm)}, EffectNone},
		{"CancelAfterConfirm", []step{ok(tcc.PhaseTry), ok(tcc.PhaseConfirm), refused(tcc.PhaseCancel)}, EffectConfirmed},
		{"ConfirmAfterCancel", []step{ok(tcc.PhaseTry), ok(tcc.PhaseCancel), refused(tcc.PhaseConfirm)}, EffectNone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, k := p.Branch(t), newKey()
			for i, s := range c.steps {
				p.call(t, b, k, i, s)
			}
			p.expect(t, b, c.want)
		})
	}
	if p.Refused != nil {
		t.Run("RefusedTry", func(t *testing.T) {
			b, k := p.Refused(t), newKey()
			code := p.callCode(t, b, k, tcc.PhaseTry)
			if code == 0 || transient(code) {
				t.Fatalf("Try of the Refused branch answered %v, want a business refusal", code)
			}
			if again := p.callCode(t, b, k, tcc.PhaseTry); again != code {
				t.Fatalf("repeated refused Try answered %v, the first %v", again, code)
			}
			p.call(t, b, k, 2, ok(tcc.PhaseCancel))
			p.expect(t, b, EffectNone)
		})
	}
	if p.Restart == nil {
		return
	}
	for _, c := range []struct {
		name  string
		phase tcc.Phase
		want  Effect
	}{{"ConfirmAfterCrash", tcc.PhaseConfirm, EffectConfirmed}, {"CancelAfterCrash", tcc.PhaseCancel, EffectNone}} {
		t.Run(c.name, func(t *testing.T) {
			b, k := p.Branch(t), newKey()
			p.call(t, b, k, 0, ok(tcc.PhaseTry))
			p.Restart(t)
			p.expect(t, b, EffectReserved)
			p.call(t, b, k, 1, ok(c.phase))
			p.call(t, b, k, 2, ok(c.phase))
			p.expect(t, b, c.want)
		})
	}
}

func (p Participant) callCode(t *testing.T, b rpc.TCCBranch, k tcc.BranchKey, phase tcc.Phase) connect.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := tcc.Invoke(ctx, p.Client(), b, phase, k)
	if err == nil {
		return 0
	}
	return connect.CodeOf(err)
}

func (p Participant) call(t *testing.T, b rpc.TCCBranch, k tcc.BranchKey, i int, s step) {
	t.Helper()
	if code := p.callCode(t, b, k, s.phase); code != s.code {
		want := "success"
		if s.code != 0 {
			want = s.code.String()
		}
		t.Fatalf("step %d, %v: answered %v, want %s", i+1, s.phase, code, want)
	}
}

func (p Participant) expect(t *testing.T, b rpc.TCCBranch, want Effect) {
	t.Helper()
	if got := p.State(t, b); got != want {
		t.Fatalf("the participant's state shows the branch %v, want %v", got, want)
	}
}

// newKey returns a fresh transaction ID and branch.
func newKey() tcc.BranchKey {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return tcc.BranchKey{TxID: "tcctest-" + hex.EncodeToString(b[:]), BranchID: "b1"}
}

func transient(c connect.Code) bool {
	switch c {
	case connect.CodeUnavailable, connect.CodeAborted, connect.CodeResourceExhausted, connect.CodeInternal,
		connect.CodeUnknown, connect.CodeDeadlineExceeded, connect.CodeCanceled:
		return true
	}
	return false
}
