package rpc_test

import (
	"log/slog"
	"sync/atomic"
	"testing"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"

	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/rpc"
)

// TestServeWarmsValidation: once serving starts, before any call, the
// default validator is built when a registered request type has rules
// (the greeter's do), so that the first call does not build it on its
// path; and it is not built when no request type has rules (here: none is registered).
func TestServeWarmsValidation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		register func(*rpc.Server)
		want     bool
	}{
		{"rules", func(s *rpc.Server) { greeterv1concord.RegisterGreeterService(s, nil) }, true},
		{"no services", func(*rpc.Server) {}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := rpc.NewServer(rpc.WithLogger(slog.New(slog.DiscardHandler)))
			tc.register(srv)
			if _, err := srv.ServeHandler(); err != nil {
				t.Fatal(err)
			}
			srv.WaitWarm()
			if got := srv.ValidatorBuilt(); got != tc.want {
				t.Fatalf("validator built before any call: %v, want %v", got, tc.want)
			}
		})
	}
}

// TestWarmLeavesGivenValidatorAlone: a validator given with WithValidator
// sees only the messages of real calls, none from the warm-up.
func TestWarmLeavesGivenValidatorAlone(t *testing.T) {
	v := &countingValidator{}
	srv := rpc.NewServer(rpc.WithValidator(v), rpc.WithLogger(slog.New(slog.DiscardHandler)))
	greeterv1concord.RegisterGreeterService(srv, nil)
	if _, err := srv.ServeHandler(); err != nil {
		t.Fatal(err)
	}
	srv.WaitWarm()
	if n := v.n.Load(); n != 0 {
		t.Fatalf("the given validator saw %d messages before any call", n)
	}
}

// countingValidator counts the messages it validates.
type countingValidator struct{ n atomic.Int64 }

func (v *countingValidator) Validate(proto.Message, ...protovalidate.ValidationOption) error {
	v.n.Add(1)
	return nil
}
