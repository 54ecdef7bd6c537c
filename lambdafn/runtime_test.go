package lambdafn_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/aws/aws-lambda-go/lambda"
	"google.golang.org/protobuf/proto"

	concordtestv1 "github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1"
	"github.com/concordrpc/concord/internal/testpb/gen/concordtest/v1/concordtestv1concord"
	"github.com/concordrpc/concord/lambdafn"
	"github.com/concordrpc/concord/rpc"
)

// functionEnv marks a child process that runs the function.
const functionEnv = "LAMBDAFN_TEST_FUNCTION"

const functionARN = "arn:aws:lambda:eu-west-1:123456789012:function:concord-test"

// maybeRunFunction runs the test function under the real aws-lambda-go
// runtime loop if the process is the child TestRuntimeLoop started;
// otherwise it returns at once. lambda.Start never returns: it exits the
// process when the Runtime API goes away.
func maybeRunFunction() {
	switch os.Getenv(functionEnv) {
	case "":
		return
	case "app":
		runAppFunction() // never returns
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv := rpc.NewServer(rpc.WithLogger(logger))
	concordtestv1concord.RegisterTestService(srv, &echoService{})
	h, err := srv.ServeHandler()
	if err != nil {
		logger.Error("registration", slog.Any("error", err))
		os.Exit(1)
	}
	lambda.Start(lambdafn.New(h, lambdafn.WithLogger(logger)))
}

// runtimeAPI is a local implementation of the Lambda Runtime API
// (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html): GET
// next hands out the queued invocations one at a time with their
// request ID, deadline and function ARN headers, and the function's POSTs
// to response or error complete them.
type runtimeAPI struct {
	srv     *httptest.Server
	pending chan invocation
	quit    chan struct{}

	mu      sync.Mutex
	waiting map[string]chan outcome
}

type invocation struct {
	id       string
	deadline time.Time
	payload  []byte
}

// outcome is what the function posted for an invocation.
type outcome struct {
	kind string // "response" or "error"
	body []byte
	at   time.Time
}

func newRuntimeAPI(t *testing.T) *runtimeAPI {
	a := &runtimeAPI{pending: make(chan invocation, 16), quit: make(chan struct{}), waiting: map[string]chan outcome{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", a.next)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", a.complete("response"))
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", a.complete("error"))
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		t.Errorf("the function reported an init error: %s", body)
		w.WriteHeader(http.StatusAccepted)
	})
	a.srv = httptest.NewServer(mux) // on 127.0.0.1
	return a
}

// addr is the host:port that AWS_LAMBDA_RUNTIME_API names.
func (a *runtimeAPI) addr() string { return strings.TrimPrefix(a.srv.URL, "http://") }

func (a *runtimeAPI) close() {
	close(a.quit)
	a.srv.Close()
}

func (a *runtimeAPI) next(w http.ResponseWriter, r *http.Request) {
	select {
	case inv := <-a.pending:
		h := w.Header()
		h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
		h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(inv.deadline.UnixMilli(), 10))
		h.Set("Lambda-Runtime-Invoked-Function-Arn", functionARN)
		h.Set("Lambda-Runtime-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")
		h.Set("Content-Type", "application/json")
		_, _ = w.Write(inv.payload)
	case <-a.quit:
		w.WriteHeader(http.StatusInternalServerError)
	case <-r.Context().Done():
	}
}

func (a *runtimeAPI) complete(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		at := time.Now()
		a.mu.Lock()
		ch := a.waiting[r.PathValue("id")]
		delete(a.waiting, r.PathValue("id"))
		a.mu.Unlock()
		if err != nil || ch == nil {
			http.Error(w, "unknown or completed invocation", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		ch <- outcome{kind: kind, body: body, at: at}
	}
}

// invoke queues an invocation with timeout and waits for its outcome.
func (a *runtimeAPI) invoke(t *testing.T, id string, payload []byte, timeout time.Duration) (outcome, time.Time) {
	t.Helper()
	ch := make(chan outcome, 1)
	a.mu.Lock()
	a.waiting[id] = ch
	a.mu.Unlock()
	deadline := time.Now().Add(timeout)
	a.pending <- invocation{id: id, deadline: deadline, payload: payload}
	select {
	case o := <-ch:
		if o.kind != "response" {
			t.Fatalf("invocation %s failed: %s", id, o.body)
		}
		return o, deadline
	case <-time.After(timeout + 30*time.Second):
		t.Fatalf("invocation %s: no outcome", id)
		return outcome{}, deadline
	}
}

// startFunction runs the function in a child process (the test binary
// again) whose AWS_LAMBDA_RUNTIME_API is api: kind "1" serves an
// rpc.Server, "app" an App (see runAppFunction); env is added to the
// child's environment.
func startFunction(t *testing.T, api *runtimeAPI, kind string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), functionEnv+"="+kind, "AWS_LAMBDA_RUNTIME_API="+api.addr(),
		"AWS_LAMBDA_FUNCTION_NAME=concord-test", "AWS_LAMBDA_MAX_CONCURRENCY="), env...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("function output:\n%s", stderr.Bytes())
		}
		api.close()
	})
	return cmd
}

// TestRuntimeLoop runs the function under the real aws-lambda-go runtime
// loop (lambda.Start, in a child process) against a local Runtime API and
// drives invocations through it: JSON and binary calls, the invocation's
// lambdacontext, a handler error, a call that outlasts its invocation, an
// event that is not an HTTP event, a streaming call; the function answers
// every one (none is a Runtime API error) and keeps serving after each.
func TestRuntimeLoop(t *testing.T) {
	t.Parallel()
	api := newRuntimeAPI(t)
	startFunction(t, api, "1")

	event := func(ev any) []byte { return mustJSON(t, ev) }
	answer := func(o outcome) (int, map[string]string, []byte) {
		resp, body := decodeAnswer(t, o.body)
		return resp.StatusCode, resp.Headers, body
	}

	// A JSON call. The first invocation also waits for the child to start.
	o, _ := api.invoke(t, "inv-json", event(request(http.MethodPost, echoPath, "application/json", []byte(`{"text":"hello"}`), false)), 10*time.Second)
	if code, _, body := answer(o); code != http.StatusOK || string(body) != `{"text":"hello"}` {
		t.Errorf("JSON call: %d %s", code, body)
	}

	// A binary call, base64 both ways.
	msg, err := proto.Marshal(&concordtestv1.EchoRequest{Text: "binary"})
	if err != nil {
		t.Fatal(err)
	}
	o, _ = api.invoke(t, "inv-proto", event(request(http.MethodPost, echoPath, "application/proto", msg, true)), 10*time.Second)
	var res concordtestv1.EchoResponse
	code, headers, body := answer(o)
	if err := proto.Unmarshal(body, &res); err != nil || code != http.StatusOK || res.GetText() != "binary" || headers["Content-Type"] != "application/proto" {
		t.Errorf("binary call: %d %q %x (%v)", code, headers, body, err)
	}
	var raw struct {
		IsBase64Encoded bool `json:"isBase64Encoded"`
	}
	if err := json.Unmarshal(o.body, &raw); err != nil || !raw.IsBase64Encoded {
		t.Errorf("binary answer is not base64-encoded: %s", o.body)
	}

	// The handler sees the invocation's request ID and function ARN.
	o, _ = api.invoke(t, "inv-whoami", event(request(http.MethodPost, echoPath, "application/json", []byte(`{"text":"whoami"}`), false)), 10*time.Second)
	if code, _, body := answer(o); code != http.StatusOK || string(body) != `{"text":"inv-whoami `+functionARN+`"}` {
		t.Errorf("whoami call: %d %s", code, body)
	}

	// A handler error is the handler's Connect error.
	o, _ = api.invoke(t, "inv-deny", event(request(http.MethodPost, echoPath, "application/json", []byte(`{"text":"deny"}`), false)), 10*time.Second)
	resp, body := decodeAnswer(t, o.body)
	wantConnectError(t, resp, body, http.StatusForbidden, connect.CodePermissionDenied)

	// A call that outlasts its invocation is cut at the deadline less the
	// margin.
	o, deadline := api.invoke(t, "inv-slow", event(request(http.MethodPost, echoPath, "application/json", []byte(`{"text":"slow"}`), false)), 700*time.Millisecond)
	resp, body = decodeAnswer(t, o.body)
	errMsg := wantConnectError(t, resp, body, http.StatusGatewayTimeout, connect.CodeDeadlineExceeded)
	// The runtime sends the deadline in milliseconds.
	if seen, want := slowDeadline(t, errMsg), time.UnixMilli(deadline.UnixMilli()).Add(-lambdafn.DefaultDeadlineMargin); !seen.Equal(want) {
		t.Errorf("handler deadline = %v, want the invocation's less the margin, %v", seen, want)
	}
	// When the answer arrives depends on scheduling (a loaded CI machine
	// under -race answered 180 ms after the deadline), so only a hang is
	// caught here: the exact deadline the handler was given is checked above.
	if late := o.at.Sub(deadline); late > 5*time.Second {
		t.Errorf("deadline_exceeded answered %v after the invocation's deadline", late)
	}

	// An event that is not an HTTP event.
	o, _ = api.invoke(t, "inv-bad", []byte(`{"hello":"world"}`), 10*time.Second)
	resp, body = decodeAnswer(t, o.body)
	wantConnectError(t, resp, body, http.StatusBadRequest, connect.CodeInvalidArgument)

	// A Connect streaming call: refused in the streaming protocol's own
	// format (an end-of-stream message carrying the error).
	o, _ = api.invoke(t, "inv-stream", event(request(http.MethodPost, "/concordtest.v1.TestService/Count", "application/connect+proto", []byte{0, 0, 0, 0, 0}, true)), 10*time.Second)
	code, headers, body = answer(o)
	if code != http.StatusOK || headers["Content-Type"] != "application/connect+proto" || !bytes.Contains(body, []byte(`"code":"unimplemented"`)) {
		t.Errorf("streaming call: %d %q %q", code, headers, body)
	}

	// Still serving.
	o, _ = api.invoke(t, "inv-last", event(request(http.MethodPost, echoPath, "application/json", []byte(`{"text":"still here"}`), false)), 10*time.Second)
	if code, _, body := answer(o); code != http.StatusOK || string(body) != `{"text":"still here"}` {
		t.Errorf("last call: %d %s", code, body)
	}
}
