package rpc

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
)

// TestDecompressionSlots checks that a decompression waits for a free slot,
// and fails with resource_exhausted when none frees in time.
func TestDecompressionSlots(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write([]byte("hello"))
	_ = zw.Close()
	g := newBoundedGzip(1 << 20)
	decompress := func() ([]byte, error) {
		r, err := g.Decompress(bytes.NewBuffer(bytes.Clone(buf.Bytes())))
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return io.ReadAll(r)
	}
	// Every slot busy.
	for range cap(g.slots) {
		g.slots <- struct{}{}
	}
	defer func(d time.Duration) { decompressWait = d }(decompressWait)
	decompressWait = 50 * time.Millisecond
	_, err := decompress()
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("with no slot free: %v, want resource_exhausted", err)
	}
	// A slot frees while it waits.
	decompressWait = time.Minute
	go func() {
		time.Sleep(20 * time.Millisecond)
		g.release()
	}()
	got, err := decompress()
	if err != nil || string(got) != "hello" {
		t.Fatalf("after a slot freed: %q, %v", got, err)
	}
	if n := len(g.slots); n != cap(g.slots)-1 {
		t.Fatalf("%d slots held after the decompression closed, want %d", n, cap(g.slots)-1)
	}
}
