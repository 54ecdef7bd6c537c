package rpc_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
)

// connectError is the Connect protocol's JSON error body.
type connectError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func TestBadInput(t *testing.T) {
	ts := startServer(t, quietServer(), &testGreeter{})
	valid, _ := proto.Marshal(&greeterv1.GreetRequest{Name: "Ada"})
	for _, tc := range []struct {
		name        string
		path        string
		contentType string
		body        []byte
		wantStatus  int
		wantCode    string // Connect error code, when the protocol answers with one
		wantMessage string
	}{
		{
			name: "malformed JSON", path: "/greeter.v1.GreeterService/Greet", contentType: "application/json",
			body: []byte(`{"name":`), wantStatus: 400, wantCode: "invalid_argument", wantMessage: "unmarshal",
		},
		{
			name: "JSON field of the wrong type", path: "/greeter.v1.GreeterService/Greet", contentType: "application/json",
			body: []byte(`{"name": 42}`), wantStatus: 400, wantCode: "invalid_argument", wantMessage: "unmarshal",
		},
		{
			name: "wrong content type", path: "/greeter.v1.GreeterService/Greet", contentType: "text/plain",
			body: []byte(`name=Ada`), wantStatus: http.StatusUnsupportedMediaType,
		},
		{
			name: "unknown method", path: "/greeter.v1.GreeterService/Whisper", contentType: "application/json",
			body: []byte(`{}`), wantStatus: 501, wantCode: "unimplemented", wantMessage: "Whisper",
		},
		{
			name: "oversized body", path: "/greeter.v1.GreeterService/Greet", contentType: "application/json",
			body: []byte(`{"name":"` + strings.Repeat("a", 5<<20) + `"}`), wantStatus: 429, wantCode: "resource_exhausted", wantMessage: "larger than configured max",
		},
		{
			name: "invalid protobuf bytes", path: "/greeter.v1.GreeterService/Greet", contentType: "application/proto",
			body: []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, wantStatus: 400, wantCode: "invalid_argument", wantMessage: "unmarshal",
		},
		{
			name: "invalid field value", path: "/greeter.v1.GreeterService/Greet", contentType: "application/json",
			body: []byte(`{"name":"` + strings.Repeat("a", 65) + `"}`), wantStatus: 400, wantCode: "invalid_argument",
			wantMessage: "name: must be at most 64 characters",
		},
		{
			name: "valid protobuf", path: "/greeter.v1.GreeterService/Greet", contentType: "application/proto",
			body: valid, wantStatus: 200,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := http.Post(ts.url+tc.path, tc.contentType, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %.200s)", res.StatusCode, tc.wantStatus, body)
			}
			if tc.wantCode != "" {
				var ce connectError
				if err := json.Unmarshal(body, &ce); err != nil {
					t.Fatalf("body %.200q is not a Connect error: %v", body, err)
				}
				if ce.Code != tc.wantCode || !strings.Contains(ce.Message, tc.wantMessage) {
					t.Fatalf("got %s %q, want %s containing %q", ce.Code, ce.Message, tc.wantCode, tc.wantMessage)
				}
			}
			// The process stays healthy.
			res, err = http.Get(ts.url + "/healthz")
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("healthz after bad input: %v %v", res, err)
			}
			res.Body.Close()
		})
	}
}
