package lambdafn

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
)

// errResponseTooLarge is what a handler's Write returns once its body
// passed the response limit; the adapter then answers resource_exhausted.
var errResponseTooLarge = errors.New("lambdafn: response is larger than Lambda's payload limit")

// recorder is the http.ResponseWriter handlers write to: it buffers the
// whole answer, since a buffered Lambda invocation returns it in one piece.
// Like net/http, it sends the headers as they were at WriteHeader (or the
// first Write) and adds declared trailers at the end. Its body is capped,
// so a runaway handler cannot exhaust memory.
type recorder struct {
	header   http.Header
	sent     http.Header // header at WriteHeader; nil before
	code     int
	body     bytes.Buffer
	max      int
	overflow bool
}

func newRecorder(max int) *recorder {
	return &recorder{header: http.Header{}, max: max}
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.sent != nil || code < 200 || code > 999 {
		return // 1xx are informational: a buffered answer has no use for them
	}
	r.code = code
	r.sent = r.header.Clone()
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.sent == nil {
		if r.header.Get("Content-Type") == "" && len(p) > 0 {
			r.header.Set("Content-Type", http.DetectContentType(p))
		}
		r.WriteHeader(http.StatusOK)
	}
	if r.overflow || r.body.Len()+len(p) > r.max {
		r.overflow = true
		return 0, errResponseTooLarge
	}
	return r.body.Write(p)
}

// hopByHop are the connection-level headers that a Lambda answer must not
// carry: the platform owns the client connection.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Te", "Trailer", "Content-Length"}

// result returns the status and headers the handler sent, with its
// trailers folded into the headers (a trailers-only answer, as gRPC-Web
// does; a buffered Lambda answer has no trailers).
func (r *recorder) result() (int, http.Header) {
	if r.sent == nil {
		r.WriteHeader(http.StatusOK)
	}
	h := r.sent.Clone()
	for _, list := range r.sent.Values("Trailer") {
		for k := range strings.SplitSeq(list, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if vs := r.header.Values(k); k != "" && len(vs) > 0 {
				h[k] = append([]string(nil), vs...)
			}
		}
	}
	for k, vs := range r.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && name != "" {
			h[http.CanonicalHeaderKey(name)] = append([]string(nil), vs...)
		}
	}
	for _, k := range hopByHop {
		h.Del(k)
	}
	return r.code, h
}

// encode returns the payload format 2.0 answer: headers with several
// values joined by commas (as RFC 9110 allows for every field but
// Set-Cookie), Set-Cookie in cookies, and the body as text when it is
// valid UTF-8 text, base64 otherwise.
func (r *recorder) encode() ([]byte, error) {
	code, h := r.result()
	resp := events.LambdaFunctionURLResponse{StatusCode: code, Headers: make(map[string]string, len(h))}
	for k, vs := range h {
		if k == "Set-Cookie" {
			resp.Cookies = append(resp.Cookies, vs...)
			continue
		}
		resp.Headers[k] = strings.Join(vs, ", ")
	}
	body := r.body.Bytes()
	if isText(h, body) {
		resp.Body = string(body)
	} else {
		resp.Body = base64.StdEncoding.EncodeToString(body)
		resp.IsBase64Encoded = true
	}
	return json.Marshal(resp)
}

// isText reports whether a body can travel as a JSON string unchanged:
// uncompressed, valid UTF-8, of a textual media type.
func isText(h http.Header, body []byte) bool {
	if len(body) == 0 {
		return true
	}
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return false
	}
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return false
	}
	switch {
	case strings.HasPrefix(mt, "text/"),
		mt == "application/json", strings.HasSuffix(mt, "+json"),
		mt == "application/xml", strings.HasSuffix(mt, "+xml"),
		mt == "application/javascript", mt == "application/x-www-form-urlencoded":
		return utf8.Valid(body)
	}
	return false
}
