//go:build !unix || aix

package rpc

// alive cannot peek at the socket on this platform: a connection the
// server closed while idle fails the call it is reused for.
func (pc *h1Conn) alive() bool { return true }
