package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// ErrDrainTimeout is returned by Serve when calls were still in flight at
// the drain deadline and had to be cut off.
var ErrDrainTimeout = errors.New("rpc: drain deadline passed with calls in flight")

// Server serves registered services over Connect, gRPC and gRPC-Web on one
// listener: HTTP/1.1 and h2c in cleartext, or HTTP/2 and HTTP/1.1 over TLS.
// Beside the services it serves gRPC health (grpc.health.v1), server
// reflection (v1 and v1alpha), GET /healthz (liveness) and GET /readyz
// (readiness).
//
// # Interceptor chain
//
// Every call runs through this chain, outermost first; each link is
// configured by an option and built by an exported constructor:
//
//  1. tracing, only when configured (NewTracingInterceptor; WithTracing)
//  2. request logging (NewLoggingInterceptor; WithCallLogLevel, WithoutCallLogging)
//  3. metrics (NewMetricsInterceptor; WithMetrics)
//  4. panic recovery (NewRecoverInterceptor; WithoutRecovery)
//  5. deadline from the method's timeout (NewDeadlineInterceptor)
//  6. admission: load shedding and rate limits (NewAdmissionInterceptor; WithAdmissionOptions, WithAdmission)
//  7. protovalidate request validation (NewValidateInterceptor; WithValidator, WithoutValidation)
//  8. TCC participant slot (WithTCCParticipant)
//  9. fencing (NewFencingInterceptor; WithFencingGuard)
//  10. user interceptors (WithInterceptors)
//
// Tracing, logging and metrics sit outside recovery so that they see
// panics as the internal errors that callers get; tracing is outermost so
// that the call's span is in the context the others log and measure with.
// Admission runs before validation so that rejected floods cost no
// decoding work beyond the first message.
//
// # Lifecycle
//
// Register every service, then call Serve once. Serve returns after ctx is
// done and the server has drained: readiness turns false at once, new
// connections are refused after the drain delay, and in-flight calls get up
// to the drain timeout to finish. A Server is safe for concurrent use once
// it serves; RegisterService must not run concurrently with Serve.
type Server struct {
	cfg      serverConfig
	connect  *connect.Server
	policies map[string]*MethodPolicy
	validate *validation // nil WithoutValidation
	warming  sync.WaitGroup
	ready    *readiness
	done     chan struct{} // closed when shutdown starts
	// admission is the default admission interceptor's state (nil with
	// WithAdmission), read by LimitStatus and ShedCalls.
	admission *admission

	mu        sync.Mutex
	handler   http.Handler // built on first use
	serving   bool
	errs      []error // registration errors, reported by Serve
	addr      net.Addr
	addrReady chan struct{}
}

// NewServer returns a Server with the default chain and options applied.
func NewServer(opts ...ServerOption) *Server {
	cfg := defaultServerConfig()
	for _, o := range opts {
		o.applyServer(&cfg)
	}
	s := &Server{
		cfg:       cfg,
		policies:  map[string]*MethodPolicy{},
		ready:     newReadiness(cfg.gates),
		done:      make(chan struct{}),
		addrReady: make(chan struct{}),
	}
	s.connect = connect.NewServer(s.chain()...)
	s.connect.Register(s.ready.healthMethods(s.done)...)
	if cfg.reflection {
		registerReflection(s.connect) // descriptors are built on the first reflection call (reflect.go)
	}
	return s
}

func (s *Server) chain() []connect.ServerInterceptor {
	c := s.cfg
	var chain []connect.ServerInterceptor
	if c.tracer != nil {
		chain = append(chain, NewTracingInterceptor(c.tracer, c.propagator))
	}
	if c.logCalls {
		chain = append(chain, NewLoggingInterceptor(c.logger, c.callLogLevel))
	}
	if c.metrics != nil {
		chain = append(chain, NewMetricsInterceptor(c.metrics))
	}
	if c.recovery {
		chain = append(chain, NewRecoverInterceptor(c.logger))
	}
	chain = append(chain, NewDeadlineInterceptor(s.lookup))
	if c.admission != nil {
		chain = append(chain, c.admission)
	} else {
		s.admission = newAdmission(s.lookup, append([]AdmissionOption{WithAdmissionLogger(c.logger)}, c.admissionOpts...))
		chain = append(chain, s.admission.interceptor())
	}
	if c.validation {
		s.validate = newValidation(c.validator, c.logger)
		chain = append(chain, s.validate.interceptor())
	}
	chain = append(chain, c.tcc...)
	if c.fencing != nil {
		chain = append(chain, NewFencingInterceptor(s.lookup, c.fencing))
	}
	return append(chain, c.interceptors...)
}

// warm starts, beside the first calls, the work of validation that they
// would otherwise do on their own path (see validation.warm), for the
// request types of every registered service whose schema is in
// protoregistry.GlobalFiles (generated code puts it there).
func (s *Server) warm() {
	if s.validate == nil {
		return
	}
	var inputs []protoreflect.MessageDescriptor
	for name := range s.ready.services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if err != nil || !ok {
			continue
		}
		for i := range sd.Methods().Len() {
			inputs = append(inputs, sd.Methods().Get(i).Input())
		}
	}
	s.warming.Go(func() { s.validate.warm(inputs) })
}

// lookup returns the policy of procedure. The table is written only before
// serving, so reads need no lock.
func (s *Server) lookup(procedure string) *MethodPolicy { return s.policies[procedure] }

// Policy returns the policy of a registered procedure, or nil.
func (s *Server) Policy(procedure string) *MethodPolicy { return s.lookup(procedure) }

// RegisterService registers a service under policy; register adds its
// methods to the connect server (generated Register<Service> functions pass
// the connect-generated registration). Registering the same service twice,
// or after Serve started, is an error that Serve reports.
func (s *Server) RegisterService(policy *ServicePolicy, register func(*connect.Server)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.handler != nil:
		s.errs = append(s.errs, fmt.Errorf("rpc: service %s registered after the server started", policy.Name))
		return
	case s.ready.services[policy.Name]:
		s.errs = append(s.errs, fmt.Errorf("rpc: service %s registered twice", policy.Name))
		return
	}
	for i := range policy.Methods {
		m := &policy.Methods[i]
		s.policies[m.Procedure] = m
	}
	s.ready.services[policy.Name] = true
	register(s.connect)
}

// Handler returns the server's HTTP handler, for mounting in another server
// or for tests. It ends registration.
func (s *Server) Handler() http.Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handlerLocked()
}

// ServeHandler is Serve for a host that serves the handler itself, such as
// a function runtime (package lambdafn) or another http.Server: it ends
// registration like Handler, returns the error Serve would return for a
// failed registration (a service registered twice or after the server
// started), and marks the server serving, so that its gRPC health check
// says SERVING and /readyz follows the readiness gates, as under Serve.
// Call it once, instead of Serve; a later Serve, or a second ServeHandler,
// is an error. There is no drain: the host stops the handler.
func (s *Server) ServeHandler() (http.Handler, error) {
	s.mu.Lock()
	if s.serving {
		s.mu.Unlock()
		return nil, errors.New("rpc: the server is already serving")
	}
	if err := errors.Join(s.errs...); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	s.serving = true
	h := s.handlerLocked()
	s.mu.Unlock()
	s.ready.update(func() { s.ready.serving = true })
	s.warm()
	return h, nil
}

func (s *Server) handlerLocked() http.Handler {
	if s.handler != nil {
		return s.handler
	}
	mux := http.NewServeMux()
	connecthttp.Mount(mux, s.connect,
		connecthttp.WithCompressMinBytes(s.cfg.compressMinBytes),
		connecthttp.WithReadMaxBytes(s.cfg.readMaxBytes),
		connecthttp.WithSendMaxBytes(s.cfg.sendMaxBytes),
		connecthttp.WithCompressors(newBoundedGzip(s.cfg.readMaxBytes)),
	)
	mux.HandleFunc("GET /healthz", s.ready.serveLive)
	mux.HandleFunc("GET /readyz", s.ready.serveReady)
	for _, r := range s.cfg.handlers {
		mux.Handle(r.pattern, r.handler)
	}
	h := limitUnaryBodies(mux, s.cfg.readMaxBytes)
	if s.cfg.cors != nil {
		h = s.cfg.cors.middleware(h)
	}
	s.handler = h
	return h
}

// SetReady reports a readiness gate (declared with WithReadinessGates) as
// ready. Unknown gate names are ignored.
func (s *Server) SetReady(gate string) {
	s.ready.update(func() { delete(s.ready.pending, gate) })
}

// SetNotReady reports a readiness gate as not ready, with a reason that
// /readyz shows.
func (s *Server) SetNotReady(gate, reason string) {
	s.ready.update(func() { s.ready.pending[gate] = reason })
}

// Ready reports whether the server should receive traffic, and if not, why.
func (s *Server) Ready() (bool, string) {
	ready, why, _ := s.ready.state()
	return ready, why
}

// Addr returns the address Serve listens on, waiting until it does or ctx
// is done.
func (s *Server) Addr(ctx context.Context) (net.Addr, error) {
	select {
	case <-s.addrReady:
		return s.addr, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Listening returns a channel that is closed once Serve has its listener.
func (s *Server) Listening() <-chan struct{} { return s.addrReady }

// ListenAndServe listens on the TCP address addr and calls Serve.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("rpc: listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done, then drains (see Server) and
// returns nil, or ErrDrainTimeout if calls had to be cut off. It returns
// earlier with an error if registration failed or ln fails. Serve closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.serving {
		s.mu.Unlock()
		ln.Close()
		return errors.New("rpc: Serve called twice")
	}
	s.serving = true
	if err := errors.Join(s.errs...); err != nil {
		s.mu.Unlock()
		ln.Close()
		return err
	}
	handler := s.handlerLocked()
	s.addr = ln.Addr()
	close(s.addrReady)
	s.mu.Unlock()
	s.warm()
	defer s.warming.Wait()

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	if s.cfg.tls != nil {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	// Calls get a base context that outlives ctx: cancelling ctx starts a
	// drain, it does not abort calls. Only the drain deadline does.
	baseCtx, cutOff := context.WithCancel(context.WithoutCancel(ctx))
	defer cutOff()
	hs := &http.Server{
		Handler:           handler,
		Protocols:         protocols,
		TLSConfig:         s.cfg.tls,
		ReadHeaderTimeout: s.cfg.readHeaderTimeout,
		IdleTimeout:       s.cfg.idleTimeout,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          slog.NewLogLogger(s.cfg.logger.Handler(), slog.LevelWarn),
	}
	// Serving from here on: the listener already accepts connections, so
	// /readyz must not report "not serving" once /healthz answers.
	s.ready.update(func() { s.ready.serving = true })
	serveErr := make(chan error, 1)
	go func() {
		var err error
		if s.cfg.tls != nil {
			err = hs.ServeTLS(ln, "", "")
		} else {
			err = hs.Serve(ln)
		}
		serveErr <- err
	}()
	s.cfg.logger.InfoContext(ctx, "rpc: serving", slog.String("addr", ln.Addr().String()))

	select {
	case err := <-serveErr:
		s.ready.update(func() { s.ready.serving = false })
		close(s.done)
		return fmt.Errorf("rpc: serve: %w", err)
	case <-ctx.Done():
	}
	return s.drain(baseCtx, hs, serveErr, cutOff)
}

func (s *Server) drain(ctx context.Context, hs *http.Server, serveErr <-chan error, cutOff context.CancelFunc) error {
	s.ready.update(func() { s.ready.draining = true })
	s.cfg.logger.InfoContext(ctx, "rpc: draining", slog.Duration("delay", s.cfg.drainDelay), slog.Duration("timeout", s.cfg.drainTimeout))
	if s.cfg.drainDelay > 0 {
		time.Sleep(s.cfg.drainDelay)
	}
	close(s.done)
	shutdownCtx, cancel := context.WithTimeout(ctx, s.cfg.drainTimeout)
	defer cancel()
	err := hs.Shutdown(shutdownCtx)
	if err != nil {
		cutOff() // end the calls still running
		_ = hs.Close()
		err = ErrDrainTimeout
		s.cfg.logger.WarnContext(ctx, "rpc: drain deadline passed; closed remaining connections")
	}
	<-serveErr // http.ErrServerClosed
	return err
}
