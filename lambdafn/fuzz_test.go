package lambdafn

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"
	"github.com/aws/aws-lambda-go/events"

	"github.com/concordrpc/concord/rpc"
)

// FuzzDecodeEvent feeds arbitrary invocation payloads (untrusted: anyone who
// can call the Function URL shapes most of the event) to the event decoder
// and to the whole adapter in front of an rpc.Server. The decoder either
// refuses with invalid_argument or resource_exhausted, or returns a request
// that is well-formed and within the body limit; Invoke always answers a
// decodable payload format 2.0 response, and never the adapter's "handler
// panicked".
//
//	go test ./lambdafn -run '^$' -fuzz FuzzDecodeEvent -fuzztime 60s
func FuzzDecodeEvent(f *testing.F) {
	const readMax = 1024
	quiet := slog.New(slog.DiscardHandler)
	h := New(rpc.NewServer(rpc.WithLogger(quiet)).Handler(), WithLogger(quiet), WithReadMaxBytes(readMax))

	f.Add([]byte(`{"version":"2.0","rawPath":"/grpc.health.v1.Health/Check","headers":{"content-type":"application/json"},"cookies":["a=b"],"requestContext":{"http":{"method":"POST","sourceIp":"203.0.113.7"}},"body":"{}"}`))
	f.Add([]byte(`{"version":"2.0","rawPath":"/grpc.health.v1.Health/Check","rawQueryString":"connect=v1&encoding=json&message=%7B%7D","requestContext":{"http":{"method":"GET"}}}`))
	f.Add([]byte(`{"version":"2.0","routeKey":"$default","rawPath":"/grpc.health.v1.Health/Check","headers":{"content-type":"application/proto","host":"x.example"},"requestContext":{"stage":"$default","http":{"method":"POST","sourceIp":"::1"}},"body":"` + base64.StdEncoding.EncodeToString([]byte{0x0a, 0x01, 'x'}) + `","isBase64Encoded":true}`))
	f.Add([]byte(`{"version":"2.0","rawPath":"/x","headers":{"content-type":"application/connect+proto"},"requestContext":{"http":{"method":"POST"}},"body":"AAAAAAA=","isBase64Encoded":true}`))
	f.Add([]byte(`{"version":"1.0","httpMethod":"GET","path":"/"}`))
	f.Add([]byte(`{"version":"2.0","rawPath":"/%zz","requestContext":{"http":{"method":"GET"}}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		req, err := decodeEvent(payload, readMax)
		if err != nil {
			if c := connect.CodeOf(err); c != connect.CodeInvalidArgument && c != connect.CodeResourceExhausted {
				t.Fatalf("decodeEvent refused with %v, want invalid_argument or resource_exhausted", err)
			}
		} else {
			checkRequest(t, req, readMax)
		}

		out, err := h.Invoke(context.Background(), payload)
		if err != nil {
			t.Fatalf("Invoke failed the invocation: %v", err)
		}
		var resp events.LambdaFunctionURLResponse
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatalf("answer is not a payload format 2.0 response: %v: %s", err, out)
		}
		if resp.StatusCode < 200 || resp.StatusCode > 999 {
			t.Fatalf("answer status %d", resp.StatusCode)
		}
		body := resp.Body
		if resp.IsBase64Encoded {
			b, err := base64.StdEncoding.DecodeString(resp.Body)
			if err != nil {
				t.Fatalf("answer body is not base64: %v", err)
			}
			body = string(b)
		}
		if strings.Contains(body, "handler panicked") {
			t.Fatalf("the handler panicked on %q", payload)
		}
	})
}

// checkRequest checks that a decoded request is one net/http's server
// could have produced.
func checkRequest(t *testing.T, req *http.Request, readMax int) {
	t.Helper()
	if !isToken(req.Method) {
		t.Fatalf("method %q is not a token", req.Method)
	}
	if !strings.HasPrefix(req.URL.Path, "/") || req.URL.Host != "" || req.URL.Scheme != "" {
		t.Fatalf("URL %q is not an absolute path", req.URL)
	}
	if req.ContentLength < 0 || req.ContentLength > int64(readMax) {
		t.Fatalf("body of %d bytes, limit %d", req.ContentLength, readMax)
	}
	for k, vs := range req.Header {
		if !isToken(k) || k != http.CanonicalHeaderKey(k) {
			t.Fatalf("header name %q", k)
		}
		for _, v := range vs {
			if !isHeaderValue(v) {
				t.Fatalf("header %s value %q", k, v)
			}
		}
	}
	if req.Header.Get("Host") != "" {
		t.Fatal("Host is in the header map; net/http keeps it in Request.Host")
	}
}
