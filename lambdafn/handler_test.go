package lambdafn_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/aws/aws-lambda-go/events"

	concordtestv1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1"
	"github.com/concordrpc/concord/lambdafn"
	"github.com/concordrpc/concord/rpc"
)

// TestConnectClient calls the function with a real Connect client through
// a Function URL stand-in: JSON bodies travel as text, binary ones in
// base64 both ways, and the handler's errors reach the client as Connect
// errors with their codes.
func TestConnectClient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		opts       []rpc.ClientOption
		wantBase64 bool
	}{
		{"proto", nil, true},
		{"json", []rpc.ClientOption{rpc.WithJSON()}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &functionURL{t: t, h: lambdafn.New(newServer(t, &echoService{}).Handler())}
			c := client(t, f, tc.opts...)
			ctx := t.Context()

			res, err := c.Echo(ctx, &concordtestv1.EchoRequest{Text: "héllo\x00"})
			if err != nil {
				t.Fatalf("Echo: %v", err)
			}
			if res.GetText() != "héllo\x00" {
				t.Errorf("Echo = %q, want %q", res.GetText(), "héllo\x00")
			}
			if f.last.requestBase64 != tc.wantBase64 || f.last.answerBase64 != tc.wantBase64 {
				t.Errorf("base64 request, answer = %v, %v; want %v both ways", f.last.requestBase64, f.last.answerBase64, tc.wantBase64)
			}

			for _, e := range []struct {
				text string
				code connect.Code
			}{
				{"deny", connect.CodePermissionDenied},
				{"", connect.CodeInvalidArgument}, // protovalidate: min_len 1
			} {
				_, err := c.Echo(ctx, &concordtestv1.EchoRequest{Text: e.text})
				if got := connect.CodeOf(err); got != e.code {
					t.Errorf("Echo(%q) error = %v, want code %v", e.text, err, e.code)
				}
			}
		})
	}
}

// TestEventShapes serves the same call from a Function URL event and from
// an API Gateway HTTP API event (payload format 2.0), with the JSON body
// as text and in base64.
func TestEventShapes(t *testing.T) {
	t.Parallel()
	h := lambdafn.New(newServer(t, &echoService{}).Handler())
	body := []byte(`{"text":"shape"}`)
	fn := request(http.MethodPost, echoPath, "application/json", body, false)
	fn64 := request(http.MethodPost, echoPath, "application/json", body, true)
	apigw := events.APIGatewayV2HTTPRequest{
		Version:  "2.0",
		RouteKey: "POST /{proxy+}",
		RawPath:  echoPath,
		Headers:  map[string]string{"content-type": "application/json", "content-length": "16"},
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey: "POST /{proxy+}", Stage: "$default", RequestID: "gw-1",
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: http.MethodPost, Path: echoPath, SourceIP: "198.51.100.1"},
		},
		Body: string(body),
	}
	for name, ev := range map[string]any{"function URL": fn, "function URL base64": fn64, "API Gateway HTTP API": apigw} {
		resp, got := invoke(t, t.Context(), h, ev)
		if resp.StatusCode != http.StatusOK || string(got) != `{"text":"shape"}` {
			t.Errorf("%s: answer %d %s, want 200 {\"text\":\"shape\"}", name, resp.StatusCode, got)
		}
	}
}

// TestHeadersAndCookies checks headers both ways: request cookies come
// back as one Cookie header, a two-valued response header is joined, and
// each Set-Cookie becomes an entry of cookies.
func TestHeadersAndCookies(t *testing.T) {
	t.Parallel()
	h := lambdafn.New(newServer(t, &echoService{}).Handler())
	ev := request(http.MethodPost, echoPath, "application/json", []byte(`{"text":"headers"}`), false)
	ev.Headers["x-tenant"] = "acme"
	ev.Cookies = []string{"c1=v1", "c2=v2"}
	resp, body := invoke(t, t.Context(), h, ev)
	if want := `{"text":"acme|c1=v1; c2=v2"}`; string(body) != want {
		t.Errorf("body = %s, want %s", body, want)
	}
	if got := resp.Headers["X-Multi"]; got != "a, b" {
		t.Errorf("X-Multi = %q, want %q", got, "a, b")
	}
	if want := []string{"s1=v1; Path=/", "s2=v2"}; !slices.Equal(resp.Cookies, want) {
		t.Errorf("cookies = %q, want %q", resp.Cookies, want)
	}
	if _, ok := resp.Headers["Set-Cookie"]; ok {
		t.Error("Set-Cookie is in headers; want it in cookies only")
	}
}

// TestConnectGet makes Connect GET calls (the message in the query
// string) to the server's health check, which has no side effects.
func TestConnectGet(t *testing.T) {
	t.Parallel()
	h := lambdafn.New(newServer(t, &echoService{}).Handler())
	for _, tc := range []struct {
		service string
		status  int
		want    string
	}{
		{"concordtest.v1.TestService", http.StatusOK, `"status":`},
		{"no.such.Service", http.StatusNotFound, `"code":"not_found"`},
	} {
		ev := request(http.MethodGet, "/grpc.health.v1.Health/Check", "", nil, false)
		ev.RawQueryString = url.Values{
			"connect": {"v1"}, "encoding": {"json"}, "message": {`{"service":"` + tc.service + `"}`},
		}.Encode()
		resp, body := invoke(t, t.Context(), h, ev)
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET check %s: %d %s, want %d and %s", tc.service, resp.StatusCode, body, tc.status, tc.want)
		}
	}
}

// TestStatusAndBodyPassThrough serves a plain handler: its status, headers
// and body come out as written, text as text and binary in base64, with
// HTTP trailers folded into the headers.
func TestStatusAndBodyPassThrough(t *testing.T) {
	t.Parallel()
	h := lambdafn.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/teapot":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Query", r.URL.Query().Get("q"))
			w.WriteHeader(http.StatusTeapot)
			_, _ = w.Write([]byte("short and stout"))
		case "/length":
			_, _ = fmt.Fprintf(w, "%s %d %q", r.Header.Get("Content-Length"), r.ContentLength, r.TransferEncoding)
		case "/binary":
			w.Header().Set("Trailer", "X-Sum")
			_, _ = w.Write([]byte{0xff, 0x00, 0xfe})
			w.Header().Set("X-Sum", "ok")
			w.Header().Set("X-Late", "dropped") // after the headers were sent
		}
	}))
	ev := request(http.MethodGet, "/teapot", "", nil, false)
	ev.RawQueryString = "q=a%20b"
	resp, body := invoke(t, t.Context(), h, ev)
	if resp.StatusCode != http.StatusTeapot || string(body) != "short and stout" || resp.IsBase64Encoded || resp.Headers["X-Query"] != "a b" {
		t.Errorf("teapot answer = %+v", resp)
	}
	// Framing headers describe the decoded body, whatever the event says.
	ev = request(http.MethodPost, "/length", "application/octet-stream", []byte("four"), true)
	ev.Headers["content-length"], ev.Headers["transfer-encoding"] = "999", "chunked"
	if _, body = invoke(t, t.Context(), h, ev); string(body) != `4 4 []` {
		t.Errorf("length answer = %s, want 4 4 []", body)
	}
	resp, body = invoke(t, t.Context(), h, request(http.MethodGet, "/binary", "", nil, false))
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, []byte{0xff, 0x00, 0xfe}) || !resp.IsBase64Encoded {
		t.Errorf("binary answer = %+v, body %x", resp, body)
	}
	if resp.Headers["X-Sum"] != "ok" || resp.Headers["X-Late"] != "" || resp.Headers["Trailer"] != "" {
		t.Errorf("binary answer headers = %q, want the X-Sum trailer and no X-Late or Trailer", resp.Headers)
	}
}

// TestBadEvents sends events that are not payload format 2.0 HTTP events:
// each is answered with a Connect JSON error, never an Invoke error or a
// panic, and the service is not called.
func TestBadEvents(t *testing.T) {
	t.Parallel()
	svc := &echoService{}
	h := lambdafn.New(newServer(t, svc).Handler(), lambdafn.WithReadMaxBytes(64))
	valid := request(http.MethodPost, echoPath, "application/json", []byte(`{"text":"x"}`), false)
	edit := func(f func(*events.LambdaFunctionURLRequest)) []byte {
		ev := valid
		ev.Headers = map[string]string{"content-type": "application/json"}
		f(&ev)
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name    string
		payload []byte
		status  int
		code    connect.Code
	}{
		{"not JSON", []byte(`{"version":`), http.StatusBadRequest, connect.CodeInvalidArgument},
		{"JSON array", []byte(`[1,2]`), http.StatusBadRequest, connect.CodeInvalidArgument},
		{"payload format 1.0", []byte(`{"version":"1.0","httpMethod":"POST","path":"/x"}`), http.StatusBadRequest, connect.CodeInvalidArgument},
		{"no method", edit(func(e *events.LambdaFunctionURLRequest) { e.RequestContext.HTTP.Method = "" }), http.StatusBadRequest, connect.CodeInvalidArgument},
		{"method with space", edit(func(e *events.LambdaFunctionURLRequest) { e.RequestContext.HTTP.Method = "PO ST" }), http.StatusBadRequest, connect.CodeInvalidArgument},
		{"relative path", edit(func(e *events.LambdaFunctionURLRequest) { e.RawPath = "x/y" }), http.StatusBadRequest, connect.CodeInvalidArgument},
		{"bad base64", edit(func(e *events.LambdaFunctionURLRequest) { e.Body, e.IsBase64Encoded = "!!!", true }), http.StatusBadRequest, connect.CodeInvalidArgument},
		{"header with newline", edit(func(e *events.LambdaFunctionURLRequest) { e.Headers["x-a"] = "1\r\nx-b: 2" }), http.StatusBadRequest, connect.CodeInvalidArgument},
		{"bad header name", edit(func(e *events.LambdaFunctionURLRequest) { e.Headers["x a"] = "1" }), http.StatusBadRequest, connect.CodeInvalidArgument},
		{"body over the limit", edit(func(e *events.LambdaFunctionURLRequest) { e.Body = `{"text":"` + strings.Repeat("x", 60) + `"}` }), http.StatusTooManyRequests, connect.CodeResourceExhausted},
		{"base64 body over the limit", edit(func(e *events.LambdaFunctionURLRequest) {
			e.Body, e.IsBase64Encoded = strings.Repeat("QUJD", 23), true // 69 bytes
		}), http.StatusTooManyRequests, connect.CodeResourceExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := decodeAnswer(t, invokeRaw(t, t.Context(), h, tc.payload))
			msg := wantConnectError(t, resp, body, tc.status, tc.code)
			if !strings.HasPrefix(msg, "lambdafn: ") {
				t.Errorf("message %q does not say it comes from lambdafn", msg)
			}
		})
	}
	if n := svc.calls.Load(); n != 0 {
		t.Errorf("the service was called %d times; want no call for a bad event", n)
	}
	// At the limit, the body is served.
	atLimit := edit(func(e *events.LambdaFunctionURLRequest) { e.Body = `{"text":"` + strings.Repeat("x", 52) + `"}` })
	if resp, body := decodeAnswer(t, invokeRaw(t, t.Context(), h, atLimit)); resp.StatusCode != http.StatusOK {
		t.Errorf("64-byte body: %d %s, want 200", resp.StatusCode, body)
	}
}

// TestStreamingRefused calls a server-streaming method and a unary one over
// gRPC-Web with real clients: each gets unimplemented with a message that
// says why, in its own protocol's format.
func TestStreamingRefused(t *testing.T) {
	t.Parallel()
	svc := &echoService{}
	h := lambdafn.New(newServer(t, svc).Handler())

	stream, err := client(t, &functionURL{t: t, h: h}).Count(t.Context(), &concordtestv1.CountRequest{N: 3})
	if err == nil {
		_, err = stream.Receive()
		_ = stream.Close()
	}
	if connect.CodeOf(err) != connect.CodeUnimplemented || !strings.Contains(err.Error(), "streaming") {
		t.Errorf("Count error = %v, want unimplemented about streaming", err)
	}

	_, err = client(t, &functionURL{t: t, h: h}, rpc.WithProtocol(rpc.ProtocolGRPCWeb)).Echo(t.Context(), &concordtestv1.EchoRequest{Text: "x"})
	if connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Errorf("gRPC-Web Echo error = %v, want unimplemented", err)
	}
	if n := svc.calls.Load(); n != 0 {
		t.Errorf("the service was called %d times; want none", n)
	}
}

// TestDeadline checks that a call gets the invocation's remaining time
// less the margin: a call that would outlast the invocation is answered
// deadline_exceeded before the invocation ends, and an invocation with no
// time left does not start the call at all.
func TestDeadline(t *testing.T) {
	t.Parallel()
	svc := &echoService{}
	h := lambdafn.New(newServer(t, svc).Handler())
	slow := request(http.MethodPost, echoPath, "application/json", []byte(`{"text":"slow"}`), false)

	ctx, cancel := context.WithTimeout(t.Context(), 400*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	resp, body := invoke(t, ctx, h, slow)
	// The answer's timing depends on scheduling (late by up to ~200 ms on a
	// loaded machine under -race): only lateness a waiting adapter would
	// show is asserted; the exact deadline the handler got is checked where
	// it is known.
	if late := time.Since(deadline); late > time.Second {
		t.Errorf("answered %v after the invocation's deadline", late)
	}
	msg := wantConnectError(t, resp, body, http.StatusGatewayTimeout, connect.CodeDeadlineExceeded)
	// The handler's context ended at the deadline less the margin, and the
	// answer is the handler's own.
	if seen, want := slowDeadline(t, msg), deadline.Add(-lambdafn.DefaultDeadlineMargin); !seen.Equal(want.Truncate(time.Microsecond)) {
		t.Errorf("handler deadline = %v, want the invocation's less the margin, %v", seen, want)
	}
	if svc.calls.Load() != 1 {
		t.Fatalf("service calls = %d, want 1", svc.calls.Load())
	}

	// Less than the margin left: refused without calling the service.
	ctx, cancel = context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	resp, body = invoke(t, ctx, h, slow)
	wantConnectError(t, resp, body, http.StatusGatewayTimeout, connect.CodeDeadlineExceeded)
	if svc.calls.Load() != 1 {
		t.Errorf("service calls = %d, want still 1", svc.calls.Load())
	}

	// A fast call within a deadline is served.
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, body = invoke(t, ctx, h, request(http.MethodPost, echoPath, "application/json", []byte(`{"text":"quick"}`), false))
	if resp.StatusCode != http.StatusOK || string(body) != `{"text":"quick"}` {
		t.Errorf("quick call: %d %s", resp.StatusCode, body)
	}
}

// TestHandlerIgnoresDeadline serves a handler that does not watch its
// context: the adapter still answers deadline_exceeded before the
// invocation ends, instead of being frozen or killed mid-call.
func TestHandlerIgnoresDeadline(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	finished := make(chan struct{})
	h := lambdafn.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(finished)
		<-release
		_, _ = w.Write([]byte("too late"))
	}), lambdafn.WithDeadlineMargin(200*time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	// Unblock the handler eventually even if the adapter waits for it, so
	// that a broken adapter fails the test rather than hanging it.
	unblock := time.AfterFunc(3*time.Second, func() { close(release) })
	resp, body := invoke(t, ctx, h, request(http.MethodPost, "/stuck", "application/json", []byte(`{}`), false))
	// The answer's timing depends on scheduling (late by up to ~200 ms on a
	// loaded machine under -race): only lateness a waiting adapter would
	// show is asserted; the exact deadline the handler got is checked where
	// it is known.
	if late := time.Since(deadline); late > time.Second {
		t.Errorf("answered %v after the invocation's deadline", late)
	}
	wantConnectError(t, resp, body, http.StatusGatewayTimeout, connect.CodeDeadlineExceeded)
	if unblock.Stop() {
		close(release)
	}
	<-finished
}

// TestResponseLimit checks that the limit is on the payload Lambda gets,
// base64 and all, and that a handler cannot buffer more than Lambda's
// 6 MB.
func TestResponseLimit(t *testing.T) {
	t.Parallel()
	handler := func(n int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/proto")
			chunk := bytes.Repeat([]byte{0xff}, 64<<10)
			for n > 0 {
				k := min(n, len(chunk))
				if _, err := w.Write(chunk[:k]); err != nil {
					return
				}
				n -= k
			}
		})
	}
	for _, tc := range []struct {
		name    string
		size    int
		opts    []lambdafn.Option
		wantErr bool
	}{
		{"small", 2000, []lambdafn.Option{lambdafn.WithResponseMaxBytes(4096)}, false},
		{"base64 over the limit", 3500, []lambdafn.Option{lambdafn.WithResponseMaxBytes(4096)}, true}, // 4668 in base64
		{"4 MiB", 4 << 20, nil, false},
		{"over Lambda's 6 MB", 7 << 20, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := lambdafn.New(handler(tc.size), tc.opts...)
			out := invokeRaw(t, t.Context(), h, mustJSON(t, request(http.MethodGet, "/blob", "", nil, false)))
			if len(out) > lambdafn.MaxResponseBytes {
				t.Errorf("answer is %d bytes, over Lambda's limit", len(out))
			}
			resp, body := decodeAnswer(t, out)
			if !tc.wantErr {
				if resp.StatusCode != http.StatusOK || len(body) != tc.size {
					t.Errorf("answer %d with %d bytes, want 200 with %d", resp.StatusCode, len(body), tc.size)
				}
				return
			}
			msg := wantConnectError(t, resp, body, http.StatusTooManyRequests, connect.CodeResourceExhausted)
			if !strings.Contains(msg, "6 MB") {
				t.Errorf("message %q does not name Lambda's limit", msg)
			}
		})
	}
}

// TestHandlerPanic checks that a panicking handler is an internal error,
// not a crashed function.
func TestHandlerPanic(t *testing.T) {
	t.Parallel()
	h := lambdafn.New(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(errors.New("boom")) }),
		lambdafn.WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil))))
	resp, body := invoke(t, t.Context(), h, request(http.MethodPost, "/x", "application/json", []byte(`{}`), false))
	if msg := wantConnectError(t, resp, body, http.StatusInternalServerError, connect.CodeInternal); strings.Contains(msg, "boom") {
		t.Errorf("message %q leaks the panic value to the caller", msg)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
