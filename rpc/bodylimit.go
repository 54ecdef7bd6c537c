package rpc

import (
	"bytes"
	"encoding/binary"
	"io"
	"mime"
	"net/http"
	"runtime"
	"sync"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectgzip"
)

// decompressWait bounds how long a compressed request waits for a
// decompression slot before it fails with resource_exhausted. A variable
// for tests.
var decompressWait = 5 * time.Second

// boundedGzip is the server's gzip compressor, hardened against
// compression bombs. Connect decompresses a request message into a pooled
// buffer; a bomb grows that buffer to twice the read limit before it is
// refused, and the pool then hands the grown buffer to other requests,
// which hold it while they wait. So each message is decompressed first into
// private pooled chunks (and refused at once if the gzip trailer declares
// more than the limit), at most a fixed number at a time, and only a
// message within the limit is copied on to connect. Decompression is CPU-bound work on a body already in memory:
// running more of it at once than there are CPUs gains nothing, and the
// slots bound the memory a burst of bombs can take to slots × the limit.
type boundedGzip struct {
	connect.Compressor
	slots   chan struct{}
	readMax int // 0: unlimited
}

func newBoundedGzip(readMax int) *boundedGzip {
	return &boundedGzip{
		Compressor: connectgzip.New(),
		slots:      make(chan struct{}, max(4, 2*runtime.GOMAXPROCS(0))),
		readMax:    readMax,
	}
}

// Decompress implements connect.Compressor. The work happens on the first
// Read: connect reports a Read's *connect.Error as it is, while an error
// from Decompress itself would become invalid_argument.
func (g *boundedGzip) Decompress(src io.Reader) (io.ReadCloser, error) {
	r, err := g.Compressor.Decompress(src)
	if err != nil {
		return nil, err
	}
	d := &decompression{r: r, g: g}
	if b, ok := src.(*bytes.Buffer); ok && b.Len() >= 18 { // a gzip header and trailer
		d.declared = int64(binary.LittleEndian.Uint32(b.Bytes()[b.Len()-4:]))
	}
	return d, nil
}

// decompression is one message's decompression.
type decompression struct {
	r        io.ReadCloser
	g        *boundedGzip
	declared int64 // the trailer's length (mod 2^32; a hint only), or 0
	done     bool  // decompressed: the message is in chunks
	chunks   []*chunk
}

// A chunk holds part of a decompressed message. Messages are kept in
// pooled fixed-size chunks rather than a growing buffer, so that a slot
// holds at most the limit (not twice it) and a refused bomb leaves no
// garbage behind.
type chunk struct {
	buf  [chunkSize]byte
	n    int // bytes held
	read int // bytes read
}

const chunkSize = 32 << 10

var chunks = sync.Pool{New: func() any { return new(chunk) }}

func (d *decompression) Read(p []byte) (int, error) {
	if !d.done {
		if err := d.decompress(); err != nil {
			return 0, err
		}
	}
	for len(d.chunks) > 0 {
		c := d.chunks[0]
		if c.read < c.n {
			n := copy(p, c.buf[c.read:c.n])
			c.read += n
			return n, nil
		}
		d.chunks = d.chunks[1:]
		chunks.Put(c)
	}
	return 0, io.EOF
}

func (d *decompression) decompress() error {
	limit := int64(d.g.readMax)
	if limit > 0 && d.declared > limit {
		return tooLarge("request message decompresses to more than", d.g.readMax)
	}
	if err := d.g.acquire(); err != nil {
		return err
	}
	defer d.g.release()
	var total int64
	for {
		c := chunks.Get().(*chunk)
		c.n, c.read = 0, 0
		n, err := io.ReadFull(d.r, c.buf[:])
		c.n = n
		total += int64(n)
		d.chunks = append(d.chunks, c)
		if limit > 0 && total > limit {
			d.free()
			return tooLarge("request message decompresses to more than", d.g.readMax)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			d.free()
			return connect.Errorf(connect.CodeInvalidArgument, "decompress request message: %v", err)
		}
	}
	d.done = true
	return nil
}

// free gives the chunks back to the pool.
func (d *decompression) free() {
	for _, c := range d.chunks {
		chunks.Put(c)
	}
	d.chunks = nil
}

func (d *decompression) Close() error {
	d.free()
	return d.r.Close()
}

func (g *boundedGzip) acquire() error {
	select {
	case g.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(decompressWait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return nil
	case <-t.C:
		return connect.NewError(connect.CodeResourceExhausted,
			"server is busy decompressing other requests; retry later")
	}
}

func (g *boundedGzip) release() { <-g.slots }

// limitUnaryBodies makes an unary Connect request whose body is larger
// than readMax fail with a message that names the limit. (The body is
// read up to the limit even when its declared length is larger: a server
// that answers before the client has sent most of its body makes the
// client see a reset connection instead of the answer; connect's own check
// says only "message is larger than configured max".) Streaming protocols frame each
// message with its size, which connect checks against the same limit.
func limitUnaryBodies(h http.Handler, readMax int) http.Handler {
	if readMax <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && isUnaryConnect(r.Header.Get("Content-Type")) {
			b := &limitedBody{r: r.Body, max: readMax}
			if r.ProtoMajor == 1 {
				// Only HTTP/1 needs its connection closed. An HTTP/2
				// server answers Connection: close with a GOAWAY, which
				// would fail the connection's other streams.
				b.header = w.Header()
			}
			r.Body = b
		}
		h.ServeHTTP(w, r)
	})
}

// isUnaryConnect reports whether a content type is that of an unary
// Connect request (application/proto, application/json, or another codec
// name; streaming requests are application/connect+codec and gRPC ones
// application/grpc...).
func isUnaryConnect(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	switch mt {
	case "application/proto", "application/json":
		return true
	}
	return false
}

type limitedBody struct {
	r      io.ReadCloser
	max    int
	header http.Header // the response's, to close an HTTP/1 connection; nil on HTTP/2
	n      int
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += n
	if b.n > b.max {
		return n, b.tooLarge()
	}
	return n, err
}

// tooLarge also makes the server close the connection after its answer:
// the rest of the body is still on the wire, and the server only knows to
// skip it when it sees its own body type.
func (b *limitedBody) tooLarge() error {
	if b.header != nil {
		b.header.Set("Connection", "close")
	}
	return tooLarge("request body is larger than", b.max)
}

func (b *limitedBody) Close() error { return b.r.Close() }

// tooLarge is the error for a request message over the read limit.
func tooLarge(what string, limit int) error {
	return connect.Errorf(connect.CodeResourceExhausted,
		"%s the server's limit of %d bytes (rpc.WithReadMaxBytes)", what, limit)
}
