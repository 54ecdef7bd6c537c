package rpc_test

import (
	"net/http"
	"testing"

	"connectrpc.com/connect/v2"

	"github.com/concordrpc/concord/rpc"
)

// TestLimitStatus makes calls to the greeter's Shout (token bucket, 3 per
// second, from its proto) on a fake clock: LimitStatus lists the limit with
// its policy, the admitted and refused counts, and a saturation that is
// the refused share of the last two windows, falling to 0 once they pass
// without calls.
func TestLimitStatus(t *testing.T) {
	clock := &fakeClock{}
	ts := startServer(t, quietServer(rpc.WithAdmissionOptions(rpc.WithLimiterClock(clock))), &testGreeter{})
	want := rpc.LimitStatus{
		Procedure: "/greeter.v1.GreeterService/Shout", Algorithm: "token_bucket", Scope: "local", Key: "none",
		Rate: 3, PerMillis: 1000, Burst: 3,
	}
	check := func(admitted, refused uint64, saturation float64) {
		t.Helper()
		got := ts.srv.LimitStatus()
		w := want
		w.Admitted, w.Refused, w.Saturation = admitted, refused, saturation
		if len(got) != 1 || got[0] != w {
			t.Fatalf("LimitStatus %+v, want [%+v]", got, w)
		}
	}
	check(0, 0, 0)
	for i := range 4 {
		code, _, body := shout(t, ts.url, nil)
		if wantCode := []int{200, 200, 200, http.StatusTooManyRequests}[i]; code != wantCode {
			t.Fatalf("call %d: %d %s", i, code, body)
		}
	}
	check(3, 1, 0.25)
	clock.Advance(rpc.SaturationWindow) // the calls are in the previous window
	check(3, 1, 0.25)
	clock.Advance(rpc.SaturationWindow)
	check(3, 1, 0)
}

// TestLimitStatusWithAdmission: a replaced admission slot has no status.
func TestLimitStatusWithAdmission(t *testing.T) {
	srv := quietServer(rpc.WithAdmission(func(next connect.ServerFunc) connect.ServerFunc { return next }))
	if got := srv.LimitStatus(); got != nil {
		t.Fatalf("LimitStatus %+v, want nil", got)
	}
}
