package main

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
)

// chaosClient returns the HTTP client of a bank process started with
// -chaos rate (fault injection for the fault tests): of the calls to TCC
// phases (procedures ending in Change, ConfirmChange or CancelChange) it
// drops the request (rate/3), makes the call and drops the response
// (rate/3), or makes the call twice and answers with the second
// (rate/3). Other calls pass untouched.
func chaosClient(rate float64) *http.Client {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	next := &http.Transport{Protocols: protocols, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}
	return &http.Client{Transport: &chaosTransport{next: next, rate: rate}}
}

type chaosTransport struct {
	next http.RoundTripper
	rate float64
}

var errChaos = errors.New("chaos: dropped")

func (c *chaosTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(req.URL.Path, "Change") || req.Body == nil {
		return c.next.RoundTrip(req)
	}
	r := rand.Float64()
	if r >= c.rate {
		return c.next.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	_ = req.Body.Close()
	if err != nil {
		return nil, err
	}
	again := func() *http.Request {
		r := req.Clone(req.Context())
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		return r
	}
	switch {
	case r < c.rate/3: // the request is lost
		return nil, errChaos
	case r < 2*c.rate/3: // the response is lost
		res, err := c.next.RoundTrip(again())
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
		}
		return nil, errChaos
	}
	// The request is delivered twice.
	if res, err := c.next.RoundTrip(again()); err == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
	}
	return c.next.RoundTrip(again())
}
