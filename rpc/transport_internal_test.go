package rpc

import (
	"bytes"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// opaqueBody is a request body whose type net/http does not know, like
// connect-go's: net/http flushes the headers before such a body.
type opaqueBody struct {
	io.Reader
	closed bool
}

func (b *opaqueBody) Close() error {
	b.closed = true
	return nil
}

// TestOneWriteClient checks that a small body reaches net/http as a
// bytes.Reader in io.NopCloser, the one form in which it writes headers and
// body together, with the same bytes, a GetBody for retries, and the
// caller's request and a large body left as they were.
func TestOneWriteClient(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		rewrite bool
	}{
		{name: "small", size: 98, rewrite: true},
		{name: "at the limit", size: maxOneWriteBody, rewrite: true},
		{name: "over the limit", size: maxOneWriteBody + 1},
		{name: "empty", size: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := strings.Repeat("x", tc.size)
			var got *http.Request
			c := oneWriteClient{&http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				got = r
				return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
			})}}
			body := &opaqueBody{Reader: strings.NewReader(payload)}
			req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/svc/M", body)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = int64(tc.size)
			if _, err := c.Do(req); err != nil {
				t.Fatal(err)
			}
			if req.Body != io.ReadCloser(body) {
				t.Fatal("the caller's request was changed")
			}
			if !tc.rewrite {
				if got.Body != io.ReadCloser(body) && tc.size > 0 {
					t.Fatal("a body over the limit was rewritten")
				}
				return
			}
			if !body.closed {
				t.Error("the original body was not closed")
			}
			if want := reflect.TypeOf(io.NopCloser(bytes.NewReader(nil))); reflect.TypeOf(got.Body) != want {
				t.Fatalf("body sent as %T, want %v", got.Body, want)
			}
			for _, read := range []func() (io.ReadCloser, error){
				func() (io.ReadCloser, error) { return got.Body, nil }, got.GetBody, got.GetBody,
			} {
				rc, err := read()
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(rc)
				if err != nil || string(b) != payload {
					t.Fatalf("body read back as %d bytes (%v), want %d", len(b), err, tc.size)
				}
			}
		})
	}
}
