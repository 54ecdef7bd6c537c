package lock

import (
	"testing"
	"time"
)

// TestPassedByEitherClock: a deadline has passed when the monotonic clock
// says so, and also when only the wall clock does (a thawed virtual
// machine whose monotonic clock stood still), never when neither does.
func TestPassedByEitherClock(t *testing.T) {
	now := time.Now()
	if passed(now, now.Add(time.Second)) {
		t.Error("a deadline a second ahead has passed")
	}
	if !passed(now, now) || !passed(now.Add(time.Second), now) {
		t.Error("a deadline reached has not passed")
	}
	// The wall clock ran two hours on while the monotonic one did not. Go
	// cannot make a Time whose monotonic reading lags its wall time, so
	// later carries none and this checks the wall-clock comparison alone.
	deadline := now.Add(time.Hour)
	later := now.Round(0).Add(2 * time.Hour) // wall time only
	if !passed(later, deadline) {
		t.Error("a deadline an hour behind the wall clock has not passed")
	}
}
