package rpc

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/concordrpc/concord/rpc/internal/healthv1"
)

// Health protocol paths (grpc.health.v1).
const (
	healthCheckProcedure = "/grpc.health.v1.Health/Check"
	healthWatchProcedure = "/grpc.health.v1.Health/Watch"
)

// readiness tracks whether the server should receive traffic: it serves, it
// is not draining, and every readiness gate reported ready.
type readiness struct {
	mu       sync.Mutex
	serving  bool
	draining bool
	pending  map[string]string // gate -> reason it is not ready
	changed  chan struct{}     // closed and replaced on every change
	services map[string]bool   // registered service names
}

func newReadiness(gates []string) *readiness {
	r := &readiness{pending: map[string]string{}, changed: make(chan struct{}), services: map[string]bool{}}
	for _, g := range gates {
		r.pending[g] = "starting"
	}
	return r
}

func (r *readiness) update(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	before := r.readyLocked()
	f()
	if r.readyLocked() != before {
		close(r.changed)
		r.changed = make(chan struct{})
	}
}

func (r *readiness) readyLocked() bool {
	return r.serving && !r.draining && len(r.pending) == 0
}

// state returns readiness, a reason when not ready, and a channel closed at
// the next change.
func (r *readiness) state() (bool, string, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.draining:
		return false, "draining", r.changed
	case !r.serving:
		return false, "not serving yet", r.changed
	case len(r.pending) > 0:
		reasons := make([]string, 0, len(r.pending))
		for g, why := range r.pending {
			reasons = append(reasons, g+": "+why)
		}
		sort.Strings(reasons)
		return false, strings.Join(reasons, "; "), r.changed
	}
	return true, "", r.changed
}

func (r *readiness) known(service string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return service == "" || r.services[service]
}

func (r *readiness) serveLive(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

func (r *readiness) serveReady(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	ready, why, _ := r.state()
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "not ready: "+why+"\n")
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

func (r *readiness) status() healthv1.HealthCheckResponse_ServingStatus {
	if ready, _, _ := r.state(); ready {
		return healthv1.HealthCheckResponse_SERVING
	}
	return healthv1.HealthCheckResponse_NOT_SERVING
}

// healthMethods implements grpc.health.v1.Health. Every registered service
// has the server's status; "" names the server itself.
func (r *readiness) healthMethods(done <-chan struct{}) []connect.Method {
	svc := healthSchema()
	return []connect.Method{
		{
			Spec: connect.Spec{
				Procedure:        healthCheckProcedure,
				StreamType:       connect.StreamTypeUnary,
				IdempotencyLevel: connect.IdempotencyNoSideEffects,
				Schema:           svc.Methods().ByName("Check"),
			},
			Handler: func(_ context.Context, _ connect.Spec, stream connect.ServerStream) error {
				var req healthv1.HealthCheckRequest
				if err := stream.Receive(&req); err != nil {
					return err
				}
				if !r.known(req.GetService()) {
					return connect.Errorf(connect.CodeNotFound, "unknown service %q", req.GetService())
				}
				return stream.Send(&healthv1.HealthCheckResponse{Status: r.status()})
			},
		},
		{
			Spec: connect.Spec{
				Procedure:  healthWatchProcedure,
				StreamType: connect.StreamTypeServer,
				Schema:     svc.Methods().ByName("Watch"),
			},
			Handler: func(ctx context.Context, _ connect.Spec, stream connect.ServerStream) error {
				var req healthv1.HealthCheckRequest
				if err := stream.Receive(&req); err != nil {
					return err
				}
				if !r.known(req.GetService()) {
					return stream.Send(&healthv1.HealthCheckResponse{Status: healthv1.HealthCheckResponse_SERVICE_UNKNOWN})
				}
				last := healthv1.HealthCheckResponse_UNKNOWN
				for {
					ready, _, changed := r.state()
					status := healthv1.HealthCheckResponse_NOT_SERVING
					if ready {
						status = healthv1.HealthCheckResponse_SERVING
					}
					if status != last {
						if err := stream.Send(&healthv1.HealthCheckResponse{Status: status}); err != nil {
							return err
						}
						last = status
					}
					select {
					case <-changed:
					case <-done: // shutdown: end watches so that draining can finish
						return nil
					case <-ctx.Done():
						return ctxError(ctx)
					}
				}
			},
		},
	}
}

// healthSchema describes grpc.health.v1.Health for reflection and
// CallInfo. It is healthv1's descriptor under the protocol's own package
// and file name, built on its own rather than registered globally, so that
// it cannot clash with grpc-go's copy.
func healthSchema() protoreflect.ServiceDescriptor {
	fdp := protodesc.ToFileDescriptorProto(healthv1.File_concord_internal_grpchealth_v1_health_proto)
	fdp.Name = proto.String("grpc/health/v1/health.proto")
	fdp.Package = proto.String("grpc.health.v1")
	rename := func(s *string) {
		*s = strings.Replace(*s, ".concord.internal.grpchealth.v1.", ".grpc.health.v1.", 1)
	}
	for _, m := range fdp.GetService()[0].GetMethod() {
		rename(m.InputType)
		rename(m.OutputType)
	}
	for _, msg := range fdp.GetMessageType() {
		for _, f := range msg.GetField() {
			if f.TypeName != nil {
				rename(f.TypeName)
			}
		}
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil { // unreachable: the descriptor is fixed and valid
		return healthv1.File_concord_internal_grpchealth_v1_health_proto.Services().Get(0)
	}
	return fd.Services().Get(0)
}

func ctxError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, "deadline exceeded")
	}
	return connect.NewError(connect.CodeCanceled, "canceled")
}
