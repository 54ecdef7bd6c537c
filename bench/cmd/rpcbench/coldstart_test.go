package main

import (
	"testing"
	"time"
)

func TestSumInitTrace(t *testing.T) {
	trace := "init internal/bytealg @0.008 ms, 0 ms clock, 0 bytes, 0 allocs\n" +
		"Usage of greeter:\n" +
		"init connectrpc.com/grpcreflect/v2 @9.1 ms, 1.03 ms clock, 411256 bytes, 3567 allocs\n" +
		"init runtime @0.1 ms, 0.25 ms clock, 0 bytes, 0 allocs\n"
	got, err := sumInitTrace(trace)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1280 * time.Microsecond; got != want {
		t.Errorf("sumInitTrace = %v, want %v", got, want)
	}
	if _, err := sumInitTrace("Usage of greeter:\n"); err == nil {
		t.Error("a trace without init lines: no error")
	}
}
