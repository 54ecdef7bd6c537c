package lambdafn

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"connectrpc.com/connect/v2"
	"github.com/aws/aws-lambda-go/events"
)

// decodeEvent turns a payload format 2.0 event into the request the
// handler serves. Function URL events (events.LambdaFunctionURLRequest)
// and API Gateway HTTP API events (events.APIGatewayV2HTTPRequest) have the
// same shape; the API Gateway type is the superset, so it decodes both.
// The payload is untrusted: every failure is a *connect.Error with code
// invalid_argument, or resource_exhausted for a body over readMax (<= 0:
// no limit).
func decodeEvent(payload []byte, readMax int) (*http.Request, error) {
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, badEvent("event is not a JSON HTTP event: %v", err)
	}
	if ev.Version != "2.0" {
		return nil, badEvent("event has payload format version %q, want \"2.0\" (a Function URL, or an API Gateway HTTP API with payload format 2.0)", ev.Version)
	}
	method := ev.RequestContext.HTTP.Method
	if !isToken(method) {
		return nil, badEvent("event has no valid HTTP method (requestContext.http.method %q)", method)
	}
	if !strings.HasPrefix(ev.RawPath, "/") || strings.ContainsAny(ev.RawPath, "?#") {
		return nil, badEvent("event has an invalid rawPath %q", ev.RawPath)
	}
	target := ev.RawPath
	if ev.RawQueryString != "" {
		target += "?" + ev.RawQueryString
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, badEvent("event has an invalid path or query: %v", err)
	}
	body, err := decodeBody(ev.Body, ev.IsBase64Encoded, readMax)
	if err != nil {
		return nil, err
	}

	header := make(http.Header, len(ev.Headers)+1)
	// Sorted, so that keys differing only in case add their values in a
	// stable order.
	for _, k := range slices.Sorted(maps.Keys(ev.Headers)) {
		v := ev.Headers[k]
		if !isToken(k) || !isHeaderValue(v) {
			return nil, badEvent("event has an invalid header %q", k)
		}
		header.Add(k, v)
	}
	// Both platforms move the Cookie header into the cookies list.
	for _, c := range ev.Cookies {
		if !isHeaderValue(c) {
			return nil, badEvent("event has an invalid cookie")
		}
	}
	if len(ev.Cookies) > 0 {
		header.Add("Cookie", strings.Join(ev.Cookies, "; "))
	}
	host := header.Get("Host")
	header.Del("Host") // as net/http's server does: r.Host holds it
	// The body is whole: framing headers describe it, not what the event
	// claims.
	header.Del("Transfer-Encoding")
	if header.Get("Content-Length") != "" {
		header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	if host == "" {
		host = ev.RequestContext.DomainName
	}

	r := &http.Request{
		Method:        method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Host:          host,
		RequestURI:    u.RequestURI(),
	}
	if ip, err := netip.ParseAddr(ev.RequestContext.HTTP.SourceIP); err == nil {
		r.RemoteAddr = net.JoinHostPort(ip.String(), "0")
	}
	return r, nil
}

// decodeBody returns the event's body, decoding base64, within readMax.
func decodeBody(s string, isBase64 bool, readMax int) ([]byte, error) {
	if !isBase64 {
		if readMax > 0 && len(s) > readMax {
			return nil, bodyTooLarge(readMax)
		}
		return []byte(s), nil
	}
	// DecodedLen is at most 2 bytes more than the decoded length: refuse an
	// oversized body before allocating it.
	if readMax > 0 && base64.StdEncoding.DecodedLen(len(s)) > readMax+2 {
		return nil, bodyTooLarge(readMax)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, badEvent("event body is not valid base64: %v", err)
	}
	if readMax > 0 && len(b) > readMax {
		return nil, bodyTooLarge(readMax)
	}
	return b, nil
}

func badEvent(format string, args ...any) error {
	return connect.Errorf(connect.CodeInvalidArgument, "lambdafn: "+format, args...)
}

func bodyTooLarge(limit int) error {
	return connect.Errorf(connect.CodeResourceExhausted,
		"lambdafn: request body is larger than the function's limit of %d bytes (lambdafn.WithReadMaxBytes)", limit)
}

// isToken reports whether s is an RFC 9110 token: a valid method or header
// name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isHeaderValue reports whether s may be a header field value: no control
// characters but horizontal tab.
func isHeaderValue(s string) bool {
	for i := range len(s) {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
