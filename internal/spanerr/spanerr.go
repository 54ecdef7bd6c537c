// Package spanerr records errors on OpenTelemetry spans with their text
// bounded: an error's text can carry what a caller or a remote peer sent,
// and a span keeps and exports it.
package spanerr

import (
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// MaxText bounds, in bytes, the error text a span's status gets.
const MaxText = 256

// Set sets span's status to error with err's text, cut to MaxText bytes,
// if err is not nil and the span is recording.
func Set(span trace.Span, err error) {
	if err == nil || !span.IsRecording() {
		return
	}
	span.SetStatus(codes.Error, Truncate(err.Error(), MaxText))
}

// Truncate returns s cut to at most n bytes, at a UTF-8 character
// boundary.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
