package lambdafn

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// Handler serves an http.Handler, such as rpc.Server.Handler(), to Lambda
// invocations from a Function URL or an API Gateway HTTP API (payload
// format 2.0). It implements the aws-lambda-go lambda.Handler interface, so
// main passes it to lambda.Start.
//
// Each invocation is one HTTP request: the event becomes an *http.Request
// whose context carries the invocation's lambdacontext and ends
// WithDeadlineMargin before the invocation's deadline; the handler's
// answer is buffered and returned as the invocation's response. Handler is
// safe for concurrent use (Lambda's multi-concurrency mode calls Invoke
// from several goroutines).
type Handler struct {
	h    http.Handler
	cfg  config
	errw *connecthttp.ErrorWriter
}

// New returns a Handler that serves h.
func New(h http.Handler, opts ...Option) *Handler {
	cfg := defaultConfig()
	for _, o := range opts {
		o.apply(&cfg)
	}
	return &Handler{h: h, cfg: cfg, errw: connecthttp.NewErrorWriter()}
}

// Invoke serves one invocation: payload is the event, the result the
// response payload (events.LambdaFunctionURLResponse, which is also the
// API Gateway HTTP API's payload format 2.0 answer). It never returns an
// error: every failure is an HTTP answer the caller can read, with the
// handler's own status and body when the handler ran, and otherwise a
// Connect error in the format of the caller's protocol (Connect JSON when
// the event could not be decoded):
//
//   - invalid_argument: the event is not a payload format 2.0 HTTP event;
//   - resource_exhausted: the request body is over WithReadMaxBytes, or the
//     answer over WithResponseMaxBytes;
//   - unimplemented: a streaming, gRPC or gRPC-Web call;
//   - deadline_exceeded: no time left for the call, or the handler still
//     ran when the invocation was about to end;
//   - internal: the handler panicked.
func (h *Handler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	rec := h.serve(ctx, payload)
	out, err := rec.encode()
	if err == nil && len(out) <= h.cfg.respMax {
		return out, nil
	}
	if err == nil {
		err = connect.Errorf(connect.CodeResourceExhausted,
			"lambdafn: response payload of %d bytes is over the function's limit of %d bytes (Lambda's limit is 6 MB)", len(out), h.cfg.respMax)
	} else {
		err = connect.Errorf(connect.CodeInternal, "lambdafn: encode response: %v", err)
	}
	h.log(ctx, slog.LevelWarn, "lambdafn: answer replaced by an error", err)
	return h.errorAnswer(nil, err).encode()
}

// serve runs the handler on the event's request and returns its answer.
func (h *Handler) serve(ctx context.Context, payload []byte) *recorder {
	req, err := decodeEvent(payload, h.cfg.readMax)
	if err != nil {
		h.log(ctx, slog.LevelDebug, "lambdafn: event refused", err)
		return h.errorAnswer(nil, err)
	}
	if isStreaming(req) {
		return h.errorAnswer(req, connect.NewError(connect.CodeUnimplemented,
			"lambdafn: streaming, gRPC and gRPC-Web calls are not served in function mode "+
				"(a buffered Lambda answer cannot carry them); use unary calls over the Connect protocol"))
	}

	callCtx, cancel := context.WithCancel(ctx)
	defer cancel() // also tells a handler that outlived the invocation to stop
	var hardStop <-chan time.Time
	if dl, ok := ctx.Deadline(); ok {
		callDeadline := dl.Add(-h.cfg.margin)
		if time.Until(callDeadline) <= 0 {
			return h.errorAnswer(req, connect.Errorf(connect.CodeDeadlineExceeded,
				"lambdafn: the invocation has less than the %v margin left for the call", h.cfg.margin))
		}
		callCtx, cancel = context.WithDeadline(callCtx, callDeadline)
		defer cancel()
		t := time.NewTimer(time.Until(dl.Add(-h.cfg.margin / 2)))
		defer t.Stop()
		hardStop = t.C
	}

	// What the error writer needs of req, kept apart: a handler that
	// outlives the invocation may still be changing req's header map.
	errReq := &http.Request{Method: req.Method, Header: http.Header{}}
	for _, v := range req.Header.Values("Content-Type") {
		errReq.Header.Add("Content-Type", v)
	}
	rec := newRecorder(h.cfg.respMax)
	done := make(chan struct{})
	var panicked any
	go func() {
		defer close(done)
		defer func() { panicked = recover() }()
		h.h.ServeHTTP(rec, req.WithContext(callCtx))
	}()
	select {
	case <-done:
	case <-hardStop:
		// The handler ignored its context. Answer now rather than be frozen
		// or killed at the deadline with no answer at all; the handler's
		// goroutine keeps rec, which is read no more.
		err := connect.NewError(connect.CodeDeadlineExceeded,
			"lambdafn: the handler did not answer before the invocation's deadline")
		h.log(ctx, slog.LevelWarn, "lambdafn: handler outlived its deadline", err)
		return h.errorAnswer(errReq, err)
	}
	switch {
	case panicked != nil:
		err := connect.Errorf(connect.CodeInternal, "lambdafn: handler panicked")
		h.log(ctx, slog.LevelError, "lambdafn: handler panicked", fmt.Errorf("%v", panicked))
		return h.errorAnswer(req, err)
	case rec.overflow:
		err := connect.Errorf(connect.CodeResourceExhausted,
			"lambdafn: response is over the function's limit of %d bytes (Lambda's limit is 6 MB)", h.cfg.respMax)
		h.log(ctx, slog.LevelWarn, "lambdafn: answer replaced by an error", err)
		return h.errorAnswer(req, err)
	}
	return rec
}

// errorAnswer writes err as the caller's protocol expects it; with no
// request (an undecodable event), as a Connect unary JSON error.
func (h *Handler) errorAnswer(req *http.Request, err error) *recorder {
	if req == nil {
		req = &http.Request{Method: http.MethodPost, Header: http.Header{}}
	}
	rec := newRecorder(h.cfg.respMax)
	_ = h.errw.Write(rec, req, err) // writes to memory: cannot fail
	return rec
}

// isStreaming reports whether req is a call that a buffered answer cannot
// serve: Connect streaming, gRPC and gRPC-Web (whose unary and streaming
// calls share one content type).
func isStreaming(req *http.Request) bool {
	if req.Method != http.MethodPost {
		return false
	}
	ct := strings.ToLower(strings.TrimSpace(req.Header.Get("Content-Type")))
	return strings.HasPrefix(ct, "application/connect+") || strings.HasPrefix(ct, "application/grpc")
}

func (h *Handler) log(ctx context.Context, level slog.Level, msg string, err error) {
	attrs := []slog.Attr{slog.String("error", err.Error())}
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		attrs = append(attrs, slog.String("aws_request_id", lc.AwsRequestID))
	}
	h.cfg.logger.LogAttrs(ctx, level, msg, attrs...)
}
