package rpc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// h1Server is an HTTP/1.1 server on loopback that counts the connections
// it accepted and those now open.
type h1Server struct {
	url              string
	srv              *http.Server
	accepted, active atomic.Int64
}

func startH1Server(t *testing.T, h http.HandlerFunc) *h1Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &h1Server{url: "http://" + ln.Addr().String()}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.accepted.Add(1)
				s.active.Add(1)
			case http.StateClosed, http.StateHijacked:
				s.active.Add(-1)
			}
		},
	}
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// echo answers the request body, or sleeps first for "slow".
func echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if string(body) == "slow" {
		select {
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
			return
		}
	}
	_, _ = w.Write(body)
}

func h1Post(ctx context.Context, t *testing.T, c *h1Client, url, body string) (string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/echo", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	return string(got), err
}

// waitUntil polls cond every 5 ms for at most 5 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestH1ClientReuse: serial calls share one connection, and bodies come
// back whole.
func TestH1ClientReuse(t *testing.T) {
	s := startH1Server(t, echo)
	c := newH1Client(4, time.Minute)
	defer c.CloseIdleConnections()
	for i := range 20 {
		want := strings.Repeat("x", i*500) // up to ~10 KB, past the 4 KB write buffer
		got, err := h1Post(t.Context(), t, c, s.url, want)
		if err != nil || got != want {
			t.Fatalf("call %d: %d bytes back, error %v", i, len(got), err)
		}
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("serial calls opened %d connections, want 1", n)
	}
}

// TestH1ClientServerClosedIdle: a connection the server closed while it
// was idle is noticed before reuse, and the next call goes over a new one
// instead of failing.
func TestH1ClientServerClosedIdle(t *testing.T) {
	s := startH1Server(t, echo)
	c := newH1Client(4, time.Minute)
	defer c.CloseIdleConnections()
	if _, err := h1Post(t.Context(), t, c, s.url, "a"); err != nil {
		t.Fatal(err)
	}
	s.srv.SetKeepAlivesEnabled(false) // closes the idle connection
	waitUntil(t, "the server to close the idle connection", func() bool { return s.active.Load() == 0 })
	s.srv.SetKeepAlivesEnabled(true)
	time.Sleep(2 * h1PeekAfter) // idle long enough to be checked
	if got, err := h1Post(t.Context(), t, c, s.url, "b"); err != nil || got != "b" {
		t.Fatalf("call after the server closed the idle connection: %q, %v", got, err)
	}
	if n := s.accepted.Load(); n != 2 {
		t.Fatalf("accepted %d connections, want 2", n)
	}
}

// TestH1ClientIdleTimeout: an idle connection is closed after the idle
// timeout, with no call to notice it, and the host's pool goes with it.
func TestH1ClientIdleTimeout(t *testing.T) {
	s := startH1Server(t, echo)
	c := newH1Client(4, 50*time.Millisecond)
	if _, err := h1Post(t.Context(), t, c, s.url, "a"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the idle connection to be closed", func() bool { return s.active.Load() == 0 })
	c.mu.Lock()
	hosts := len(c.hosts)
	c.mu.Unlock()
	if hosts != 0 {
		t.Fatalf("pool keeps %d hosts after its last connection closed, want none", hosts)
	}
}

// TestH1ClientBoundAndWaiters: with one connection allowed, a second call
// waits for it; a waiter whose context ends gives up with the context's
// error, and the connection serves the next call once free.
func TestH1ClientBoundAndWaiters(t *testing.T) {
	release := make(chan struct{})
	s := startH1Server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("hold") != "" {
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	})
	c := newH1Client(1, time.Minute)
	defer c.CloseIdleConnections()
	held := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.url+"/?hold=1", nil)
		res, err := c.Do(req)
		if err == nil {
			_, err = io.ReadAll(res.Body)
			res.Body.Close()
		}
		held <- err
	}()
	waitUntil(t, "the first call to take the connection", func() bool { return s.active.Load() == 1 })
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := h1Post(ctx, t, c, s.url, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter with a 50ms deadline: %v, want deadline exceeded", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() {
			_, err := h1Post(t.Context(), t, c, s.url, "c")
			errs <- err
		})
	}
	time.Sleep(20 * time.Millisecond) // let them queue (they would pass anyway)
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("accepted %d connections with a bound of 1", n)
	}
}

// TestH1ClientCancel: a call whose context ends while it waits for its
// response returns the context's error at once, and its connection is
// closed, not reused.
func TestH1ClientCancel(t *testing.T) {
	s := startH1Server(t, echo)
	c := newH1Client(4, time.Minute)
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		waitUntil(t, "the call to start", func() bool { return s.active.Load() == 1 })
		cancel()
	}()
	start := time.Now()
	if _, err := h1Post(ctx, t, c, s.url, "slow"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancelled call returned after %v", d)
	}
	waitUntil(t, "the cancelled call's connection to close", func() bool { return s.active.Load() == 0 })
	if got, err := h1Post(t.Context(), t, c, s.url, "d"); err != nil || got != "d" {
		t.Fatalf("call after a cancelled one: %q, %v", got, err)
	}
}

// TestH1ClientBodyClosedEarly: a response body closed before its end
// closes the connection (it still holds the rest), and a streamed
// (chunked) response read to its end leaves it reusable.
func TestH1ClientBodyClosedEarly(t *testing.T) {
	s := startH1Server(t, func(w http.ResponseWriter, _ *http.Request) {
		for i := range 3 {
			_, _ = io.WriteString(w, strings.Repeat("y", 10)+string(rune('0'+i)))
			w.(http.Flusher).Flush()
		}
	})
	c := newH1Client(4, time.Minute)
	defer c.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.url, nil)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.TransferEncoding) == 0 {
		t.Fatalf("response not chunked: %v", res.TransferEncoding)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(res.Body, buf); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	waitUntil(t, "the connection to close", func() bool { return s.active.Load() == 0 })
	for range 2 {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.url, nil)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || !bytes.HasSuffix(got, []byte("y2")) {
			t.Fatalf("streamed body %q, %v", got, err)
		}
	}
	if n := s.accepted.Load(); n != 2 {
		t.Fatalf("accepted %d connections, want 2 (one closed early, one reused)", n)
	}
}

// TestH1ClientDialError: a refused dial fails the call with net's dial
// error (so callers can tell the request was never sent) and frees the
// slot.
func TestH1ClientDialError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	c := newH1Client(1, time.Minute)
	for range 3 { // the slot is freed each time, or the third would wait
		_, err := h1Post(t.Context(), t, c, url, "a")
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" {
			t.Fatalf("call to a closed port: %v, want a dial error", err)
		}
	}
}

// TestH1ClientHugeHeaders: a server that sends headers without end fails
// the call once they pass h1MaxResponseHeader, instead of being buffered.
func TestH1ClientHugeHeaders(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := http.ReadRequest(bufio.NewReader(conn)); err != nil {
			return
		}
		_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\n")
		line := "X-Filler: " + strings.Repeat("z", 1000) + "\r\n"
		for range 2 * h1MaxResponseHeader / len(line) {
			if _, err := io.WriteString(conn, line); err != nil {
				return
			}
		}
		_, _ = io.Copy(io.Discard, conn) // until the client closes: a close now could reset what it has not read
	}()
	c := newH1Client(1, time.Minute)
	_, err = h1Post(t.Context(), t, c, "http://"+ln.Addr().String(), "a")
	if !errors.Is(err, errResponseHeaderTooLarge) {
		t.Fatalf("endless headers: %v, want errResponseHeaderTooLarge", err)
	}
}

// partial answers with its headers and the first part of a body, then
// waits for the caller to go away.
func partial(w http.ResponseWriter, r *http.Request) {
	_, _ = io.ReadAll(r.Body)
	_, _ = io.WriteString(w, "first part;")
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

// TestH1ClientAbandonByCancel: a response whose caller cancels the
// context, neither reading the body to its end nor closing it (connect's
// streams allow abandoning a call so), gives back its connection: the next
// call gets the pool's only slot. A read of the body after the cancel
// reports the context's error, not a timeout.
func TestH1ClientAbandonByCancel(t *testing.T) {
	s := startH1Server(t, partial)
	c := newH1Client(1, time.Minute)
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.url, strings.NewReader("a"))
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("first part;"))
	if _, err := io.ReadFull(res.Body, buf); err != nil {
		t.Fatal(err)
	}
	cancel() // abandoned: no Close
	if _, err := res.Body.Read(buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after the cancel: %v, want context.Canceled", err)
	}
	ctx2, cancel2 := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel2()
	req2, _ := http.NewRequestWithContext(ctx2, http.MethodPost, s.url, strings.NewReader("b"))
	res2, err := c.Do(req2)
	if err != nil {
		t.Fatalf("next call after an abandoned one: %v (the slot was not given back)", err)
	}
	res2.Body.Close()
	waitUntil(t, "the abandoned call's connection to close", func() bool { return s.active.Load() <= 1 })
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestH1ClientEarlyResponse: a server that answers before reading the
// whole request, and closes (as Concord's does for a body over its limit),
// gets its answer through to the caller, not the write's error.
func TestH1ClientEarlyResponse(t *testing.T) {
	s := startH1Server(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		_, _ = io.WriteString(w, "too large")
	})
	c := newH1Client(1, time.Minute)
	const size = 64 << 20
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.url, io.LimitReader(zeros{}, size))
	req.ContentLength = size
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("early answer lost: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge || string(body) != "too large" {
		t.Fatalf("got %d %q, want 413 \"too large\"", res.StatusCode, body)
	}
}
