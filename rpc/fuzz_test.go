package rpc_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/protobuf/proto"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
)

// FuzzRequestDecoding sends arbitrary bodies, under each content type the
// server accepts and with or without gzip, through the whole handler chain. The server must answer
// every request with a well-formed response, and never with the recovery
// interceptor's "internal error", which would mean a handler panicked.
//
//	go test ./rpc -run '^$' -fuzz FuzzRequestDecoding -fuzztime 60s
func FuzzRequestDecoding(f *testing.F) {
	srv := quietServer()
	greeterv1concord.RegisterGreeterService(srv, &testGreeter{})
	handler := srv.Handler()
	valid, _ := proto.Marshal(&greeterv1.GreetRequest{Name: "Ada"})
	f.Add(uint8(0), []byte(`{"name":"Ada"}`))
	f.Add(uint8(1), valid)
	f.Add(uint8(2), append([]byte{0, 0, 0, 0, byte(len(valid))}, valid...))
	f.Add(uint8(3), append([]byte{0, 0, 0, 0, byte(len(valid))}, valid...))
	f.Add(uint8(0), []byte(`{"name":"\ud800"}`))
	f.Add(uint8(1), []byte{0x0a, 0x80})
	f.Add(uint8(129), gzipped(f, valid)) // 128+: the body claims to be gzipped
	f.Add(uint8(128), gzipBomb(f, 8<<20, true))
	contentTypes := []string{
		"application/json", "application/proto", "application/grpc", "application/grpc-web+proto",
		"application/grpc+json", "application/connect+proto", "application/connect+json",
	}
	f.Fuzz(func(t *testing.T, ct uint8, body []byte) {
		contentType := contentTypes[int(ct)%len(contentTypes)]
		req := httptest.NewRequest(http.MethodPost, "/greeter.v1.GreeterService/Greet", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		if ct >= 128 {
			req.Header.Set("Content-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		for _, h := range []http.Header{rec.Header(), rec.Result().Trailer} {
			if h.Get("Grpc-Message") == "internal error" {
				t.Fatalf("%s body %q: the handler panicked", contentType, body)
			}
		}
		if contentType == "application/json" || contentType == "application/proto" {
			if rec.Code == http.StatusOK {
				return
			}
			var ce connectError
			if err := json.Unmarshal(rec.Body.Bytes(), &ce); err != nil {
				t.Fatalf("%s body %q: status %d with a body that is not a Connect error: %q", contentType, body, rec.Code, rec.Body.Bytes())
			}
			if ce.Message == "internal error" || ce.Code == "unknown" {
				t.Fatalf("%s body %q: %s %q", contentType, body, ce.Code, ce.Message)
			}
		}
	})
}
