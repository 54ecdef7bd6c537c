package config

import "errors"

// Errors returned by the package. Each method's doc names the ones it
// returns; they are wrapped with the details (%w).
var (
	// ErrInvalid is returned for a value that is refused before anything
	// is written: it breaks its protovalidate rules (the error text lists
	// the violations), it is not of the config's type, the name or writer
	// is malformed, or the value is too large.
	ErrInvalid = errors.New("config: invalid")
	// ErrConflict is returned by a conditional write whose expected
	// version is not the config's current version; the error names the
	// current one. Nothing was written.
	ErrConflict = errors.New("config: version conflict")
	// ErrNotFound is returned when a config, or one of its versions, does
	// not exist (never written, or older than the kept history).
	ErrNotFound = errors.New("config: not found")
	// ErrCorrupt is returned for a stored version that cannot be decoded.
	ErrCorrupt = errors.New("config: corrupt stored version")
	// ErrClosed is returned by a Handle that was closed.
	ErrClosed = errors.New("config: handle closed")
)
