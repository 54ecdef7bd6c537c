package lock_test

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/internal/nodetest"
)

// stallProxy forwards TCP connections to a NATS node and can hold back the
// node's replies (not drop them: the protocol stream stays intact), so that
// a client's request commits on the node while the client times out.
type stallProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	stall  bool
	held   int // replies that waited out a stall
	closed bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *stallProxy) setStall(on bool) {
	p.mu.Lock()
	p.stall = on
	p.mu.Unlock()
	p.cond.Broadcast()
}

// heldReplies returns how many reads from the node waited out a stall.
func (p *stallProxy) heldReplies() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

func (p *stallProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(server, client)
			server.Close()
		}()
		go func() {
			defer p.wg.Done()
			defer client.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := server.Read(buf)
				if n > 0 {
					p.mu.Lock()
					if p.stall {
						p.held++
					}
					for p.stall && !p.closed {
						p.cond.Wait()
					}
					p.mu.Unlock()
					if _, werr := client.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

func (p *stallProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.cond.Broadcast()
	p.wg.Wait()
}

// clientVia opens a client-mode node through the proxy.
func clientVia(t *testing.T, p *stallProxy) *coord.Node {
	t.Helper()
	ctx := within(t, 20*time.Second)
	c, err := coord.Open(ctx, coord.WithClient([]string{p.url()}, nodetest.ClientAuth()), coord.WithName("via-proxy"), quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func listenAddr(t *testing.T, n *coord.Node) string {
	t.Helper()
	return strings.TrimPrefix(n.ClientURL(), "nats://")
}
