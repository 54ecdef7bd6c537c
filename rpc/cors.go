package rpc

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CORS configures cross-origin access for browser clients (connect-web,
// grpc-web). The request and response headers that the Connect, gRPC-Web and
// gRPC protocols use are always allowed and exposed.
type CORS struct {
	// AllowedOrigins lists origins ("https://app.example.com") allowed to
	// call; "*" allows any origin.
	AllowedOrigins []string
	// AllowedHeaders lists extra request headers allowed, like
	// "Authorization".
	AllowedHeaders []string
	// ExposedHeaders lists extra response headers that scripts may read.
	ExposedHeaders []string
	// AllowCredentials lets browsers send cookies and HTTP auth. It cannot
	// be combined with "*" in AllowedOrigins; the origin is echoed instead.
	AllowCredentials bool
	// MaxAge is how long browsers may cache a preflight answer. Default: 2h.
	MaxAge time.Duration
}

var (
	corsProtocolRequestHeaders = []string{
		"Content-Type", "Content-Encoding", "Accept-Encoding", "Connect-Protocol-Version",
		"Connect-Timeout-Ms", "Connect-Content-Encoding", "Connect-Accept-Encoding",
		"Grpc-Timeout", "Grpc-Encoding", "Grpc-Accept-Encoding", "X-Grpc-Web", "X-User-Agent",
	}
	corsProtocolResponseHeaders = []string{
		"Content-Encoding", "Connect-Content-Encoding", "Grpc-Status", "Grpc-Message",
		"Grpc-Status-Details-Bin", "Grpc-Encoding", "Retry-After",
	}
)

// middleware wraps next with CORS handling.
func (c CORS) middleware(next http.Handler) http.Handler {
	anyOrigin := slices.Contains(c.AllowedOrigins, "*")
	allowHeaders := strings.Join(append(slices.Clone(corsProtocolRequestHeaders), c.AllowedHeaders...), ", ")
	exposeHeaders := strings.Join(append(slices.Clone(corsProtocolResponseHeaders), c.ExposedHeaders...), ", ")
	maxAge := c.MaxAge
	if maxAge == 0 {
		maxAge = 2 * time.Hour
	}
	maxAgeSeconds := strconv.Itoa(int(maxAge / time.Second))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		if !anyOrigin && !slices.Contains(c.AllowedOrigins, origin) {
			next.ServeHTTP(w, r) // no CORS headers: the browser blocks the response
			return
		}
		if anyOrigin && !c.AllowCredentials {
			h.Set("Access-Control-Allow-Origin", "*")
		} else {
			h.Set("Access-Control-Allow-Origin", origin)
		}
		if c.AllowCredentials {
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST")
			h.Set("Access-Control-Allow-Headers", allowHeaders)
			h.Set("Access-Control-Max-Age", maxAgeSeconds)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", exposeHeaders)
		next.ServeHTTP(w, r)
	})
}
