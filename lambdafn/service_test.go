package lambdafn_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	concordtestv1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1"
	"github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1/concordtestv1concord"
	"github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1/concordtestv1connect"
	"github.com/concordrpc/concord/lambdafn"
	"github.com/concordrpc/concord/rpc"
)

// echoService is the test service behind the function. Echo's text picks
// what it does:
//
//   - "slow": waits for its context to end, then fails with
//     deadline_exceeded and a message "slow: deadline <unix µs>" naming
//     the deadline its context had;
//   - "deny": fails with permission_denied;
//   - "headers": answers the X-Tenant and Cookie request headers, and sets
//     a two-valued X-Multi header and two cookies;
//   - "whoami": answers the invocation's request ID and function ARN from
//     lambdacontext;
//   - anything else: echoes it.
type echoService struct {
	concordtestv1connect.UnimplementedTestServiceHandler
	calls atomic.Int64
}

func (s *echoService) Echo(ctx context.Context, req *concordtestv1.EchoRequest) (*concordtestv1.EchoResponse, error) {
	s.calls.Add(1)
	switch req.GetText() {
	case "slow":
		<-ctx.Done()
		dl, _ := ctx.Deadline()
		return nil, connect.Errorf(connect.CodeDeadlineExceeded, "slow: deadline %d", dl.UnixMicro())
	case "deny":
		return nil, connect.NewError(connect.CodePermissionDenied, "denied by the test")
	case "headers":
		info, _ := connect.CallInfoForServerContext(ctx)
		in := info.RequestHeader()
		out := info.ResponseHeader()
		out.Add("X-Multi", "a")
		out.Add("X-Multi", "b")
		out.Add("Set-Cookie", "s1=v1; Path=/")
		out.Add("Set-Cookie", "s2=v2")
		return &concordtestv1.EchoResponse{Text: in.Get("X-Tenant") + "|" + in.Get("Cookie")}, nil
	case "whoami":
		lc, ok := lambdacontext.FromContext(ctx)
		if !ok {
			return nil, connect.NewError(connect.CodeFailedPrecondition, "no lambdacontext")
		}
		return &concordtestv1.EchoResponse{Text: lc.AwsRequestID + " " + lc.InvokedFunctionArn}, nil
	}
	return &concordtestv1.EchoResponse{Text: req.GetText()}, nil
}

// newServer returns an rpc.Server serving svc, logging to t (or nowhere
// when t is nil).
func newServer(t *testing.T, svc *echoService) *rpc.Server {
	logger := slog.New(slog.DiscardHandler)
	if t != nil {
		logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	srv := rpc.NewServer(rpc.WithLogger(logger))
	concordtestv1concord.RegisterTestService(srv, svc)
	return srv
}

const echoPath = "/concordtest.v1.TestService/Echo"

// request returns a Function URL event.
func request(method, path, contentType string, body []byte, base64Body bool) events.LambdaFunctionURLRequest {
	ev := events.LambdaFunctionURLRequest{
		Version: "2.0",
		RawPath: path,
		Headers: map[string]string{"host": "abc.lambda-url.eu-west-1.on.aws", "connect-protocol-version": "1"},
		RequestContext: events.LambdaFunctionURLRequestContext{
			RequestID:  "req-1",
			DomainName: "abc.lambda-url.eu-west-1.on.aws",
			HTTP: events.LambdaFunctionURLRequestContextHTTPDescription{
				Method: method, Path: path, Protocol: "HTTP/1.1", SourceIP: "203.0.113.7",
			},
		},
	}
	if contentType != "" {
		ev.Headers["content-type"] = contentType
	}
	if base64Body {
		ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
	} else {
		ev.Body = string(body)
	}
	return ev
}

// invoke marshals ev, invokes h with it and decodes the answer.
func invoke(t *testing.T, ctx context.Context, h *lambdafn.Handler, ev any) (events.LambdaFunctionURLResponse, []byte) {
	t.Helper()
	payload, ok := ev.([]byte)
	if !ok {
		var err error
		if payload, err = json.Marshal(ev); err != nil {
			t.Fatal(err)
		}
	}
	return decodeAnswer(t, invokeRaw(t, ctx, h, payload))
}

func invokeRaw(t *testing.T, ctx context.Context, h *lambdafn.Handler, payload []byte) []byte {
	t.Helper()
	out, err := h.Invoke(ctx, payload)
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	return out
}

// decodeAnswer decodes a response payload and its body.
func decodeAnswer(t *testing.T, out []byte) (events.LambdaFunctionURLResponse, []byte) {
	t.Helper()
	var resp events.LambdaFunctionURLResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("answer is not a payload format 2.0 response: %v\n%s", err, out)
	}
	body := []byte(resp.Body)
	if resp.IsBase64Encoded {
		var err error
		if body, err = base64.StdEncoding.DecodeString(resp.Body); err != nil {
			t.Fatalf("answer body is not base64: %v", err)
		}
	}
	return resp, body
}

// slowDeadline returns the deadline that Echo("slow") reports in its
// error message.
func slowDeadline(t *testing.T, msg string) time.Time {
	t.Helper()
	us, err := strconv.ParseInt(strings.TrimPrefix(msg, "slow: deadline "), 10, 64)
	if err != nil {
		t.Fatalf("message %q is not the slow call's: %v", msg, err)
	}
	return time.UnixMicro(us)
}

// connectError is a Connect unary error body.
type connectError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// wantConnectError checks that an answer is a Connect unary JSON error
// with the given HTTP status and code, and returns its message.
func wantConnectError(t *testing.T, resp events.LambdaFunctionURLResponse, body []byte, status int, code connect.Code) string {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %d, want %d (body %s)", resp.StatusCode, status, body)
	}
	if ct := resp.Headers["Content-Type"]; ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e connectError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("body is not a Connect error: %v: %s", err, body)
	}
	if e.Code != code.String() {
		t.Errorf("code = %q, want %q (message %q)", e.Code, code, e.Message)
	}
	return e.Message
}

// functionURL plays a Function URL in front of a Handler, for real Connect
// clients: it turns each HTTP request into the event a Function URL sends
// (binary bodies in base64), invokes the Handler with the request's
// context, bounded by timeout like an invocation, and turns the answer
// back into an HTTP response. It implements connecthttp.HTTPClient.
type functionURL struct {
	t       *testing.T
	h       *lambdafn.Handler
	timeout time.Duration // the function's timeout; 0: none

	last struct{ requestBase64, answerBase64 bool }
}

func (f *functionURL) Do(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		_ = req.Body.Close()
	}
	ct := req.Header.Get("Content-Type")
	text := strings.HasPrefix(ct, "application/json") || strings.HasPrefix(ct, "text/")
	ev := request(req.Method, req.URL.EscapedPath(), "", body, !text && len(body) > 0)
	ev.RawQueryString = req.URL.RawQuery
	for k, vs := range req.Header {
		if k == "Cookie" {
			for _, v := range vs {
				ev.Cookies = append(ev.Cookies, strings.Split(v, "; ")...)
			}
			continue
		}
		ev.Headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	ctx := req.Context()
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	out, err := f.h.Invoke(ctx, payload)
	if err != nil {
		return nil, fmt.Errorf("invoke: %w", err)
	}
	resp, answer := decodeAnswer(f.t, out)
	f.last.requestBase64, f.last.answerBase64 = ev.IsBase64Encoded, resp.IsBase64Encoded
	header := http.Header{}
	for k, v := range resp.Headers {
		header.Set(k, v)
	}
	for _, c := range resp.Cookies {
		header.Add("Set-Cookie", c)
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode)),
		StatusCode:    resp.StatusCode,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          io.NopCloser(strings.NewReader(string(answer))),
		ContentLength: int64(len(answer)),
		Request:       req,
	}, nil
}

// client returns a test service client that calls h through a functionURL.
func client(t *testing.T, f *functionURL, opts ...rpc.ClientOption) concordtestv1connect.TestServiceClient {
	conn := rpc.NewConn("https://abc.lambda-url.eu-west-1.on.aws", append([]rpc.ClientOption{rpc.WithHTTPClient(f)}, opts...)...)
	t.Cleanup(func() { _ = conn.Close() })
	return concordtestv1concord.NewTestServiceClient(conn)
}
