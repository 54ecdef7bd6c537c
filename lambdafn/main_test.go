package lambdafn_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// A child process started by TestRuntimeLoop runs the function and
	// never returns.
	maybeRunFunction()
	goleak.VerifyTestMain(m)
}
