//go:build unix && !aix

package rpc

import (
	"errors"
	"syscall"
)

// alive reports whether the peer has neither closed the idle connection
// nor sent anything on it (an HTTP/1.1 server sends nothing between
// responses), with one non-blocking peek at the socket. The caller checks
// that nothing is left in the read buffer.
func (pc *h1Conn) alive() bool {
	sc, ok := pc.conn.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	live := false
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		live = n <= 0 && (errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK))
		return true
	})
	return err == nil && live
}
