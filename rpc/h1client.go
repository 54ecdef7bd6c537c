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
	dialer      net.Dialer

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
		dialer: net.Dialer{Timeout: 30 * time.Second},
		hosts:  map[string]*h1Host{},
	}
}

// Do sends req and returns its response. The response's body must be read
// to its end or closed.
func (c *h1Client) Do(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	pc, reused, err := c.get(ctx, addr)
	if err != nil {
		return nil, urlError(req, err)
	}
	// The context's end interrupts the call's reads and writes; the
	// connection is then closed, not reused.
	stop := context.AfterFunc(ctx, func() { _ = pc.conn.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		c.discard(pc)
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		} else if reused && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			err = fmt.Errorf("connection closed by the server before its response (kept alive since an earlier call): %w", err)
		}
		return nil, urlError(req, err)
	}
	if err := req.Write(pc.bw); err != nil {
		return fail(err)
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(err)
	}
	pc.lr.left = h1MaxResponseHeader
	res, err := http.ReadResponse(pc.br, req)
	for err == nil && res.StatusCode >= 100 && res.StatusCode < 200 && res.StatusCode != http.StatusSwitchingProtocols {
		res, err = http.ReadResponse(pc.br, req) // an informational response: the final one follows
	}
	pc.lr.left = -1
	if err != nil {
		return fail(err)
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		_ = res.Body.Close()
		return fail(errors.New("unexpected 101 Switching Protocols"))
	}
	body := &h1Body{rc: res.Body, c: c, pc: pc, stop: stop, reuse: !res.Close && !req.Close}
	if res.Body == http.NoBody {
		body.finish(true)
	}
	res.Body = body
	return res, nil
}

// urlError wraps err as net/http's client does, so callers see the same
// error shapes (and the context's errors through it) from either client.
func urlError(req *http.Request, err error) error {
	return &url.Error{Op: req.Method[:1] + lowerASCII(req.Method[1:]), URL: req.URL.String(), Err: err}
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if 'A' <= ch && ch <= 'Z' {
			b[i] = ch + 'a' - 'A'
		}
	}
	return string(b)
}

// h1Body is a response body that gives its connection back to the pool
// when read to its end, and closes it if closed before. Close may be
// called while a Read is blocked: it closes the connection, which ends
// the Read.
type h1Body struct {
	rc    io.ReadCloser
	c     *h1Client
	pc    *h1Conn
	stop  func() bool
	reuse bool // the response and request allow the connection's reuse
	done  atomic.Bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done.Load() {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err != nil {
		b.finish(errors.Is(err, io.EOF))
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.finish(false)
	return nil
}

// finish ends the call, once: the connection goes back to the pool if the
// body was read to its end (complete), its reuse is allowed and the
// context did not interrupt it; otherwise it is closed.
func (b *h1Body) finish(complete bool) {
	if !b.done.CompareAndSwap(false, true) {
		return
	}
	if b.stop() && complete && b.reuse {
		b.c.put(b.pc)
		return
	}
	b.c.discard(b.pc)
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
	conn, err := c.dialer.DialContext(ctx, "tcp", h.addr)
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
