package rpc_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

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
		encoding    string // Content-Encoding
		chunked     bool   // send without a Content-Length
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
			body: []byte(`{"name":"` + strings.Repeat("a", 5<<20) + `"}`), wantStatus: 429, wantCode: "resource_exhausted",
			wantMessage: "request body is larger than the server's limit of 4194304 bytes (rpc.WithReadMaxBytes)",
		},
		{
			name: "oversized chunked body", path: "/greeter.v1.GreeterService/Greet", contentType: "application/json", chunked: true,
			body: []byte(`{"name":"` + strings.Repeat("a", 5<<20) + `"}`), wantStatus: 429, wantCode: "resource_exhausted",
			wantMessage: "request body is larger than the server's limit of 4194304 bytes",
		},
		{
			name: "gzip bomb", path: "/greeter.v1.GreeterService/Greet", contentType: "application/proto", encoding: "gzip",
			body: gzipBomb(t, 64<<20, false), wantStatus: 429, wantCode: "resource_exhausted",
			wantMessage: "request message decompresses to more than the server's limit of 4194304 bytes",
		},
		{
			name: "gzip bomb with a forged length", path: "/greeter.v1.GreeterService/Greet", contentType: "application/proto", encoding: "gzip",
			body: gzipBomb(t, 64<<20, true), wantStatus: 429, wantCode: "resource_exhausted",
			wantMessage: "request message decompresses to more than the server's limit of 4194304 bytes",
		},
		{
			name: "corrupt gzip", path: "/greeter.v1.GreeterService/Greet", contentType: "application/proto", encoding: "gzip",
			body: corrupt(gzipped(t, valid)), wantStatus: 400, wantCode: "invalid_argument", wantMessage: "decompress",
		},
		{
			name: "valid gzipped protobuf", path: "/greeter.v1.GreeterService/Greet", contentType: "application/proto", encoding: "gzip",
			body: gzipped(t, valid), wantStatus: 200,
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
			var body io.Reader = bytes.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(body)
			}
			req, err := http.NewRequest(http.MethodPost, ts.url+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tc.contentType)
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %.200s)", res.StatusCode, tc.wantStatus, got)
			}
			if tc.wantCode != "" {
				var ce connectError
				if err := json.Unmarshal(got, &ce); err != nil {
					t.Fatalf("body %.200q is not a Connect error: %v", got, err)
				}
				if ce.Code != tc.wantCode || !strings.Contains(ce.Message, tc.wantMessage) {
					t.Fatalf("got %s %q, want %s containing %q", ce.Code, ce.Message, tc.wantCode, tc.wantMessage)
				}
			}
			// The process stays healthy.
			res, err = http.Get(ts.url + "/healthz")
			if err != nil || res.StatusCode != 200 {
				b, _ := io.ReadAll(res.Body)
				t.Fatalf("healthz after bad input: %v %v %q", res, err, b)
			}
			res.Body.Close()
		})
	}
}

// gzipped returns b gzipped.
func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gzipBomb returns n zero bytes gzipped (about n/1000 bytes). forged
// makes its trailer claim 100 bytes, as a bomb built to slip past a check
// of the trailer would.
func gzipBomb(t testing.TB, n int, forged bool) []byte {
	t.Helper()
	b := gzipped(t, make([]byte, n))
	if forged {
		binary.LittleEndian.PutUint32(b[len(b)-4:], 100)
	}
	return b
}

// corrupt flips a byte in the middle of b (a copy).
func corrupt(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)/2] ^= 0xff
	return b
}

// TestGzipBombBurst sends a burst of concurrent compression bombs, with
// honest and forged trailers: every one is refused with a clear message,
// the heap stays far below what the bombs would take (each costs up to
// twice the limit in a growing buffer when nothing bounds them), and a
// valid compressed call still succeeds.
func TestGzipBombBurst(t *testing.T) {
	ts := startServer(t, quietServer(), &testGreeter{})
	const bombs = 260
	honest, forged := gzipBomb(t, 16<<20, false), gzipBomb(t, 16<<20, true)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	post := func(body []byte) (int, connectError, error) {
		req, err := http.NewRequest(http.MethodPost, ts.url+"/greeter.v1.GreeterService/Greet", bytes.NewReader(body))
		if err != nil {
			return 0, connectError{}, err
		}
		req.Header.Set("Content-Type", "application/proto")
		req.Header.Set("Content-Encoding", "gzip")
		res, err := client.Do(req)
		if err != nil {
			return 0, connectError{}, err
		}
		defer res.Body.Close()
		var ce connectError
		if res.StatusCode != http.StatusOK {
			err = json.NewDecoder(res.Body).Decode(&ce)
		}
		return res.StatusCode, ce, err
	}
	// How each bomb was refused: for its size (by its trailer, or
	// decompressed up to the limit), or because every decompression slot
	// stayed busy (a correct refusal too, on a loaded machine).
	type outcome struct {
		forged bool
		busy   bool
		err    error
	}
	peak := heapPeak(t)
	results := make(chan outcome, bombs)
	for i := range bombs {
		body, isForged := honest, false
		if i%4 != 0 { // most bombs are the ones a trailer check cannot catch
			body, isForged = forged, true
		}
		go func() {
			status, ce, err := post(body)
			o := outcome{forged: isForged}
			switch {
			case err != nil:
				o.err = err
			case status != 429 || ce.Code != "resource_exhausted":
				o.err = fmt.Errorf("bomb answered %d %s %q", status, ce.Code, ce.Message)
			case strings.Contains(ce.Message, "busy decompressing"):
				o.busy = true
			case !strings.Contains(ce.Message, "decompresses to more than"):
				o.err = fmt.Errorf("bomb refused with %q", ce.Message)
			}
			results <- o
		}()
	}
	var forgedSized, forgedBusy, honestSized, honestBusy int
	for range bombs {
		o := <-results
		switch {
		case o.err != nil:
			t.Error(o.err)
		case o.forged && o.busy:
			forgedBusy++
		case o.forged:
			forgedSized++
		case o.busy:
			honestBusy++
		default:
			honestSized++
		}
	}
	grew := peak()
	t.Logf("%d bombs of 16 MiB: heap grew by at most %d MiB; refused for size: %d honest, %d forged; busy: %d honest, %d forged",
		bombs, grew>>20, honestSized, forgedSized, honestBusy, forgedBusy)
	// An honest trailer is refused before decompression, never as busy. A
	// forged one is refused for its size only after it was decompressed up
	// to the limit: at least some must be, or the bound on decompression
	// was never exercised (every forged bomb refused as busy).
	if honestBusy != 0 || forgedSized == 0 {
		t.Errorf("refused for size: %d honest, %d forged; as busy: %d honest, %d forged; want no honest bomb busy and some forged ones decompressed and refused for size",
			honestSized, forgedSized, honestBusy, forgedBusy)
	}
	// bombHeapLimit: 64 MiB (96 MiB under -race) over measured 17-24 MiB
	// (47-51 MiB); unbounded, 250-450 MiB.
	if limit := uint64(bombHeapLimit); grew > limit {
		t.Errorf("heap grew by %d MiB during %d bombs, want at most %d MiB", grew>>20, bombs, limit>>20)
	}
	valid, _ := proto.Marshal(&greeterv1.GreetRequest{Name: "Ada"})
	if status, ce, err := post(gzipped(t, valid)); err != nil || status != 200 {
		t.Fatalf("valid compressed call after the burst: %d %v %v", status, ce, err)
	}
}

// heapPeak samples the heap (objects, live or not yet swept) every
// millisecond until the returned function is called, which returns the
// largest growth seen over the heap at the start.
func heapPeak(t *testing.T) func() uint64 {
	t.Helper()
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	base := read()
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var top uint64
		for {
			if v := read(); v > top {
				top = v
			}
			select {
			case <-stop:
				done <- top
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(stop)
		top := <-done
		if top < base {
			return 0
		}
		return top - base
	}
}

// TestOversizedBodyKeepsHTTP2Connection: an over-size unary request on an
// h2c connection is refused without ending the connection for its other
// streams (an HTTP/2 server answers a handler's Connection: close with a
// GOAWAY, which fails requests the client already sent on it).
func TestOversizedBodyKeepsHTTP2Connection(t *testing.T) {
	ts := startServer(t, quietServer(), &testGreeter{})
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protocols}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	valid, _ := proto.Marshal(&greeterv1.GreetRequest{Name: "Ada"})
	post := func(body []byte) (status int, reused bool) {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodPost,
			ts.url+"/greeter.v1.GreeterService/Greet", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/proto")
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode, reused
	}
	if status, _ := post(valid); status != 200 {
		t.Fatalf("first call: %d", status)
	}
	if status, _ := post(make([]byte, 5<<20)); status != 429 {
		t.Fatalf("over-size call: %d, want 429", status)
	}
	time.Sleep(100 * time.Millisecond) // time for a GOAWAY to arrive, if one were sent
	if status, reused := post(valid); status != 200 || !reused {
		t.Fatalf("call after the over-size one: status %d, reused connection %v; want 200 on the same connection", status, reused)
	}
}
