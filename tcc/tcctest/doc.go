// Package tcctest is a test kit for TCC participants: Run drives a
// user's participant (its real server, its real store) through the calls
// a coordinator may make in the worst order and checks, through the
// user's own view of the participant's state, that each phase took effect
// exactly once and never out of turn:
//
//   - a repeated Try, Confirm or Cancel changes nothing more;
//   - a Cancel before its Try succeeds and changes nothing (null
//     compensation), and the late Try is refused and reserves nothing
//     (anti-hanging);
//   - a Confirm without a Try, and a Cancel after a Confirm, are refused
//     and change nothing;
//   - a refused Try reserves nothing, is refused again when repeated, and
//     its Cancel succeeds;
//   - a Confirm or Cancel after the participant restarted between phases
//     (a crash) completes the branch.
//
// Participants built on package tcc's barrier pass it; the bank example's
// do (examples/bank/kit_test.go). In a test of your own participant:
//
//	tcctest.Run(t, tcctest.Participant{
//		Client:  func() *connect.Client { return conn.Client(accountsv1concord.AccountServicePolicy()) },
//		Branch:  func(t *testing.T) rpc.TCCBranch { return debitFromFreshAccount(t, 10) },
//		Refused: func(t *testing.T) rpc.TCCBranch { return debitFromFreshAccount(t, 1_000_000) },
//		State:   func(t *testing.T, b rpc.TCCBranch) tcctest.Effect { return effectOf(t, b) },
//		Restart: func(t *testing.T) { restartService(t) },
//	})
package tcctest
