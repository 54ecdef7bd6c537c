package rpc

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzH1Response feeds the HTTP/1.1 client arbitrary bytes as a server's
// answer (a hostile or broken peer): it must not panic, must fail or
// return a response whose body reads to an end, and must leave its pool
// consistent, every connection it opened closed or idle.
func FuzzH1Response(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
		"garbage\r\n\r\n",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, answer string) {
		c := newH1Client(1, time.Minute)
		c.dialConn = func(context.Context, string, string) (net.Conn, error) {
			client, server := net.Pipe()
			go func() {
				defer server.Close()
				if _, err := http.ReadRequest(bufio.NewReader(server)); err != nil {
					return
				}
				_, _ = io.WriteString(server, answer)
			}()
			return client, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://fuzz.invalid/x", strings.NewReader("q"))
		if err != nil {
			t.Fatal(err)
		}
		if res, err := c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
			res.Body.Close()
		}
		c.CloseIdleConnections()
		c.mu.Lock()
		defer c.mu.Unlock()
		for addr, h := range c.hosts {
			t.Fatalf("host %s left with %d open, %d idle, %d waiting", addr, h.open, len(h.idle), len(h.waiters))
		}
	})
}
