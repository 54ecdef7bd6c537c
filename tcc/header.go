package tcc

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"connectrpc.com/connect/v2"
)

// The request headers of a TCC call. Each carries exactly one value of 1 to
// MaxIDLen bytes drawn from the ASCII letters, digits and "._:-".
const (
	// TxHeader carries the transaction ID of a Try, Confirm or Cancel call.
	TxHeader = "Concord-Tcc-Tx"
	// BranchHeader carries the branch ID, unique within the transaction.
	BranchHeader = "Concord-Tcc-Branch"
)

// MaxIDLen bounds a transaction or branch ID, in bytes.
const MaxIDLen = 128

// ErrBadHeader is the cause of the invalid_argument error a TCC call gets
// when TxHeader or BranchHeader is missing, repeated or malformed.
var ErrBadHeader = errors.New("tcc: bad transaction header")

// BranchKey names one branch of one transaction: the pair the barrier
// records phases under.
type BranchKey struct {
	// TxID is the transaction ID (TxHeader).
	TxID string
	// BranchID is the branch ID (BranchHeader).
	BranchID string
}

// Validate reports whether both IDs are well formed; the error wraps
// ErrBadHeader.
func (k BranchKey) Validate() error {
	if err := checkID(TxHeader, k.TxID); err != nil {
		return err
	}
	return checkID(BranchHeader, k.BranchID)
}

// hash returns a fixed-size digest of the key for storage keys and lock
// maps: caller-chosen IDs never reach a key raw. The IDs cannot contain
// NUL, so the encoding is unambiguous.
func (k BranchKey) hash() string {
	sum := sha256.Sum256([]byte(k.TxID + "\x00" + k.BranchID))
	return hex.EncodeToString(sum[:16])
}

// ParseHeaders reads the branch key of a TCC call from its request header.
// Each header must be present exactly once with a valid ID; anything else
// is an error wrapping ErrBadHeader whose text names the header and the
// problem (and never echoes more than a bounded, quoted prefix of a value).
func ParseHeaders(h *connect.Header) (BranchKey, error) {
	tx, err := single(h, TxHeader)
	if err != nil {
		return BranchKey{}, err
	}
	br, err := single(h, BranchHeader)
	if err != nil {
		return BranchKey{}, err
	}
	k := BranchKey{TxID: tx, BranchID: br}
	return k, k.Validate()
}

// SetHeaders writes k into a request header, replacing earlier values. It
// returns Validate's error and then leaves h unchanged.
func SetHeaders(h *connect.Header, k BranchKey) error {
	if err := k.Validate(); err != nil {
		return err
	}
	h.Set(TxHeader, k.TxID)
	h.Set(BranchHeader, k.BranchID)
	return nil
}

func single(h *connect.Header, name string) (string, error) {
	var vs []string
	if h != nil {
		vs = h.Values(name)
	}
	switch len(vs) {
	case 0:
		return "", fmt.Errorf("%w: %s is missing", ErrBadHeader, name)
	case 1:
		return vs[0], nil
	}
	return "", fmt.Errorf("%w: %s is repeated (%d values)", ErrBadHeader, name, len(vs))
}

func checkID(name, v string) error {
	if v == "" {
		return fmt.Errorf("%w: %s is empty", ErrBadHeader, name)
	}
	if len(v) > MaxIDLen {
		return fmt.Errorf("%w: %s is %d bytes, more than %d", ErrBadHeader, name, len(v), MaxIDLen)
	}
	for i := 0; i < len(v); i++ {
		if !idByte(v[i]) {
			return fmt.Errorf("%w: %s has a byte 0x%02x at offset %d outside [A-Za-z0-9._:-]", ErrBadHeader, name, v[i], i)
		}
	}
	return nil
}

func idByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '.' || c == '_' || c == ':' || c == '-'
}
