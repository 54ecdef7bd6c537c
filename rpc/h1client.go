package rpc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// h1Client is the default client's HTTP/1.1 client in cleartext. It sends
// each request and reads its response on the caller's goroutine over a
// pool of keep-alive connections per host, where net/http's Transport
// hands every call from the caller to a write-loop goroutine and from a
// read-loop goroutine back: two goroutine hand-offs per call that cost
// about a tenth of a serial unary call on loopback (BENCHMARKS.md, "RPC
// over HTTP/1.1 and HTTP/2").
//
// Per host it keeps at most maxConns connections open (dialing, in use or
// idle); a call that finds none free waits for one, within its context.
// An idle connection is closed after idleTimeout, and one the server
// closed while it was idle is found before reuse and dropped. A
// connection carries the next call only once the previous response was
// read to its end; a call whose response body is closed early, or whose
// context ends while it runs, closes its connection. It speaks only
// cleartext HTTP/1.1 without a proxy: the requests the default client
// sends it (see newHTTPClients).
type h1Client struct {
	maxConns    int
	idleTimeout time.Duration
	// dialConn opens a connection (a net.Dialer's DialContext; tests give
	// their own).
	dialConn func(ctx context.Context, network, addr string) (net.Conn, error)

	mu    sync.Mutex
	hosts map[string]*h1Host
}

// h1Host is the pool of one host ("host:port"). Guarded by h1Client.mu.
type h1Host struct {
	addr    string
	open    int         // connections dialing, in use or idle
	idle    []*h1Conn   // most recently used last
	waiters []chan h1Go // calls waiting for a connection, oldest first
}

// h1Go is what a waiting call is given: an idle connection, or (nil) the
// right to dial one.
type h1Go struct{ c *h1Conn }

// h1MaxResponseHeader bounds the bytes a response's status line and
// headers may take: past it the call fails and its connection is closed,
// so that a hostile or broken server cannot make the client buffer
// without end.
const h1MaxResponseHeader = 1 << 20

// h1Conn is one pooled connection.
type h1Conn struct {
	h    *h1Host
	conn net.Conn
	lr   *limitedConn // the reader under br, limited while headers are read
	br   *bufio.Reader
	bw   *bufio.Writer
	// idleTimer closes the connection once idle for idleTimeout since
	// idleSince (a timer that fires late for an earlier idle spell finds
	// a later idleSince). Both guarded by h1Client.mu.
	idleTimer *time.Timer
	idleSince time.Time
}

// h1PeekAfter is how long a connection must have been idle before its
// reuse looks at the socket for a close by the server (h1Conn.alive): a
// system call, which calls in quick succession skip. A server that closes
// a connection within this time of its last response (shutting down)
// fails the next call on it, as it can with net/http, whose read loop
// notices such a close only as fast as the scheduler runs it.
const h1PeekAfter = time.Millisecond

func newH1Client(maxConns int, idleTimeout time.Duration) *h1Client {
	return &h1Client{
		maxConns: maxConns, idleTimeout: idleTimeout,
		dialConn: (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
		hosts:    map[string]*h1Host{},
	}
}

// Do sends req and returns its response. The response's body must be read
// to its end or closed, or the request's context ended: any of the three
// gives the connection back.
func (c *h1Client) Do(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if req.Body != nil {
		defer req.Body.Close() // read by Write; closed whatever happens, as a RoundTripper does
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	pc, reused, err := c.get(ctx, addr)
	if err != nil {
		return nil, urlError(req, err)
	}
	call := &h1Call{c: c, pc: pc, ctx: ctx}
	// The context's end closes the connection: it ends the call's reads
	// and writes, and the connection goes, whoever holds the response.
	call.stop = context.AfterFunc(ctx, func() { call.give(false) })
	fail := func(err error) (*http.Response, error) {
		call.end(false)
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		} else if reused && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			err = fmt.Errorf("connection closed by the server before its response (kept alive since an earlier call): %w", err)
		}
		return nil, urlError(req, err)
	}
	werr := req.Write(pc.bw)
	if werr == nil {
		werr = pc.bw.Flush()
	}
	if werr != nil {
		if ctx.Err() != nil {
			return fail(werr)
		}
		// The server may have answered before reading the whole request,
		// and closed (as Concord's does for a body over its limit): its
		// answer, if any, is already here. Read it briefly; the connection
		// is not reused.
		_ = pc.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	}
	pc.lr.left = h1MaxResponseHeader
	res, err := http.ReadResponse(pc.br, req)
	for err == nil && res.StatusCode >= 100 && res.StatusCode < 200 && res.StatusCode != http.StatusSwitchingProtocols {
		res, err = http.ReadResponse(pc.br, req) // an informational response: the final one follows
	}
	pc.lr.left = -1
	switch {
	case err != nil && werr != nil:
		return fail(werr)
	case err != nil:
		return fail(err)
	case res.StatusCode == http.StatusSwitchingProtocols:
		_ = res.Body.Close()
		return fail(errors.New("unexpected 101 Switching Protocols"))
	}
	call.reuse = werr == nil && !res.Close && !req.Close && !hasToken(req.Header, "Connection", "close")
	body := &h1Body{rc: res.Body, call: call}
	if res.Body == http.NoBody {
		call.end(true)
	}
	res.Body = body
	return res, nil
}

// hasToken reports whether a comma-separated header of h lists token
// (ASCII case-insensitively).
func hasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// urlError wraps err as net/http's client does, so callers see the same
// error shapes (and the context's errors through it) from either client.
func urlError(req *http.Request, err error) error {
	op := "Post"
	if m := req.Method; m != "" {
		op = m[:1] + strings.ToLower(m[1:])
	}
	return &url.Error{Op: op, URL: req.URL.String(), Err: err}
}

// h1Call is one call's hold on its connection, given back exactly once
// (end): to the pool after a complete response, closed otherwise, and
// closed when the call's context ends first.
type h1Call struct {
	c     *h1Client
	pc    *h1Conn
	ctx   context.Context //nolint:containedctx // the call's, to report its end as the caller's
	stop  func() bool     // stops the context's watch
	reuse bool            // set before the body is handed out: the connection may carry another call
	done  atomic.Bool
}

// end gives the connection back if it still holds it: to the pool if
// complete (the response read to its end) and reuse allows, else closed.
func (call *h1Call) end(complete bool) {
	call.stop()
	call.give(complete)
}

// give is end without stopping the context's watch, which calls it.
func (call *h1Call) give(complete bool) {
	if !call.done.CompareAndSwap(false, true) {
		return
	}
	if complete && call.reuse {
		call.c.put(call.pc)
		return
	}
	call.c.discard(call.pc)
}

// h1Body is a response body that gives its call's connection back when
// read to its end, and closes it if closed before. Close may be called
// while a Read is blocked: it closes the connection, which ends the Read.
// An error, once returned, is returned again by later Reads.
type h1Body struct {
	rc     io.ReadCloser
	call   *h1Call
	closed atomic.Bool
	err    error // the first error Read returned; only Read uses it
}

// errBodyClosed is returned by a Read after Close.
var errBodyClosed = errors.New("rpc: read on a closed response body")

func (b *h1Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.closed.Load() {
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	if err != nil {
		if errors.Is(err, io.EOF) {
			b.call.end(true)
		} else {
			b.call.end(false)
			if cerr := b.call.ctx.Err(); cerr != nil {
				err = cerr // the context's end closed the connection under the read
			} else if b.closed.Load() {
				err = errBodyClosed
			}
		}
		b.err = err
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.closed.Store(true)
	b.call.end(false)
	return nil
}

// get returns a connection to addr: an idle one that is still open, or a
// new one if fewer than maxConns are open, or else the first that comes
// free, within ctx. reused says it carried an earlier call.
func (c *h1Client) get(ctx context.Context, addr string) (*h1Conn, bool, error) {
	for {
		c.mu.Lock()
		h := c.hosts[addr]
		if h == nil {
			h = &h1Host{addr: addr}
			c.hosts[addr] = h
		}
		if n := len(h.idle); n > 0 {
			pc := h.idle[n-1]
			h.idle = h.idle[:n-1]
			pc.idleTimer.Stop()
			idle := time.Since(pc.idleSince)
			c.mu.Unlock()
			if pc.br.Buffered() == 0 && (idle < h1PeekAfter || pc.alive()) {
				return pc, true, nil
			}
			c.discard(pc)
			continue
		}
		if h.open < c.maxConns {
			h.open++
			c.mu.Unlock()
			pc, err := c.dial(ctx, h)
			return pc, false, err
		}
		ch := make(chan h1Go, 1)
		h.waiters = append(h.waiters, ch)
		c.mu.Unlock()
		select {
		case g := <-ch:
			if g.c == nil { // a slot came free: dial
				pc, err := c.dial(ctx, h)
				return pc, false, err
			}
			if g.c.br.Buffered() == 0 { // handed over as its response ended
				return g.c, true, nil
			}
			c.discard(g.c)
		case <-ctx.Done():
			c.mu.Lock()
			if i := slices.Index(h.waiters, ch); i >= 0 {
				h.waiters = slices.Delete(h.waiters, i, i+1)
				c.mu.Unlock()
				return nil, false, ctx.Err()
			}
			c.mu.Unlock()
			// Handed something as the context ended: pass it on.
			if g := <-ch; g.c != nil {
				c.put(g.c)
			} else {
				c.release(h)
			}
			return nil, false, ctx.Err()
		}
	}
}

// dial opens a connection to h, whose slot the caller holds; on failure
// the slot is released.
func (c *h1Client) dial(ctx context.Context, h *h1Host) (*h1Conn, error) {
	conn, err := c.dialConn(ctx, "tcp", h.addr)
	if err != nil {
		c.release(h)
		return nil, err
	}
	lr := &limitedConn{Conn: conn, left: -1}
	return &h1Conn{h: h, conn: conn, lr: lr, br: bufio.NewReader(lr), bw: bufio.NewWriter(conn)}, nil
}

// errResponseHeaderTooLarge fails a response whose headers pass
// h1MaxResponseHeader.
var errResponseHeaderTooLarge = fmt.Errorf("rpc: response headers larger than %d bytes", h1MaxResponseHeader)

// limitedConn reads from its connection at most left bytes more, or
// without limit when left is negative.
type limitedConn struct {
	net.Conn
	left int
}

func (c *limitedConn) Read(p []byte) (int, error) {
	if c.left < 0 {
		return c.Conn.Read(p)
	}
	if c.left == 0 {
		return 0, errResponseHeaderTooLarge
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= n
	return n, err
}

// put gives pc to the oldest waiting call, or keeps it idle.
func (c *h1Client) put(pc *h1Conn) {
	_ = pc.conn.SetDeadline(time.Time{})
	c.mu.Lock()
	h := pc.h
	if len(h.waiters) > 0 {
		ch := h.waiters[0]
		h.waiters = slices.Delete(h.waiters, 0, 1)
		c.mu.Unlock()
		ch <- h1Go{pc}
		return
	}
	h.idle = append(h.idle, pc)
	pc.idleSince = time.Now()
	if pc.idleTimer == nil {
		pc.idleTimer = time.AfterFunc(c.idleTimeout, func() { c.expire(pc) })
	} else {
		pc.idleTimer.Reset(c.idleTimeout)
	}
	c.mu.Unlock()
}

// expire closes pc if it has been idle for idleTimeout.
func (c *h1Client) expire(pc *h1Conn) {
	c.mu.Lock()
	h := pc.h
	i := slices.Index(h.idle, pc)
	if i < 0 || time.Since(pc.idleSince) < c.idleTimeout {
		c.mu.Unlock()
		return
	}
	h.idle = slices.Delete(h.idle, i, i+1)
	c.mu.Unlock()
	c.discard(pc)
}

// discard closes pc and releases its slot.
func (c *h1Client) discard(pc *h1Conn) {
	_ = pc.conn.Close()
	c.release(pc.h)
}

// release frees one of h's slots: the oldest waiting call may dial.
func (c *h1Client) release(h *h1Host) {
	c.mu.Lock()
	if len(h.waiters) > 0 {
		ch := h.waiters[0]
		h.waiters = slices.Delete(h.waiters, 0, 1)
		c.mu.Unlock()
		ch <- h1Go{} // the slot passes to it
		return
	}
	h.open--
	if h.open == 0 && c.hosts[h.addr] == h {
		delete(c.hosts, h.addr) // nothing refers to it: no connection, no waiter
	}
	c.mu.Unlock()
}

// CloseIdleConnections closes the idle connections; connections in use
// are closed when their calls end. The client stays usable.
func (c *h1Client) CloseIdleConnections() {
	c.mu.Lock()
	var idle []*h1Conn
	for _, h := range c.hosts {
		for _, pc := range h.idle {
			pc.idleTimer.Stop()
		}
		idle = append(idle, h.idle...)
		h.idle = nil
	}
	c.mu.Unlock()
	for _, pc := range idle {
		c.discard(pc)
	}
}
