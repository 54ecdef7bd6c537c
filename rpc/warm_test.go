package rpc_test

import (
	"log/slog"
	"sync"
	"testing"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1/concordtestv1concord"
	"github.com/concordrpc/concord/rpc"
)

// recordingValidator records the types it was asked to validate.
type recordingValidator struct {
	mu   sync.Mutex
	seen map[protoreflect.FullName]int
}

func (v *recordingValidator) Validate(m proto.Message, _ ...protovalidate.ValidationOption) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seen[m.ProtoReflect().Descriptor().FullName()]++
	return nil
}

// TestServeWarmsValidation: once serving starts, before any call, every
// request type of the registered services has been through the validator
// once, so that the first call does not build and compile it on its path.
func TestServeWarmsValidation(t *testing.T) {
	v := &recordingValidator{seen: map[protoreflect.FullName]int{}}
	srv := rpc.NewServer(rpc.WithValidator(v), rpc.WithLogger(slog.New(slog.DiscardHandler)))
	concordtestv1concord.RegisterTestService(srv, nil)
	if _, err := srv.ServeHandler(); err != nil {
		t.Fatal(err)
	}
	srv.WaitWarm()
	for _, name := range []protoreflect.FullName{"concordtest.v1.EchoRequest", "concordtest.v1.SumRequest", "concordtest.v1.CountRequest", "concordtest.v1.ReserveRequest"} {
		if v.seen[name] == 0 {
			t.Errorf("%s not warmed; warmed: %v", name, v.seen)
		}
	}
}
