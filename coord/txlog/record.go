package txlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// State is where a transaction is.
type State string

// The states of a transaction. Trying moves to Confirming or Cancelling
// (the decision), which move only to their end.
const (
	// StateTrying: the transaction and its branches are logged and the
	// Trys may be running; nothing is decided.
	StateTrying State = "trying"
	// StateConfirming: decided commit; Confirm runs on every branch.
	StateConfirming State = "confirming"
	// StateCancelling: decided cancel; Cancel runs on every branch.
	StateCancelling State = "cancelling"
	// StateConfirmed: every branch confirmed (finished).
	StateConfirmed State = "confirmed"
	// StateCancelled: every branch cancelled (finished).
	StateCancelled State = "cancelled"
)

// Decided reports whether s is a decision or its end.
func (s State) Decided() bool { return s != StateTrying && s.valid() }

// Finished reports whether s is an end state.
func (s State) Finished() bool { return s == StateConfirmed || s == StateCancelled }

func (s State) valid() bool {
	switch s {
	case StateTrying, StateConfirming, StateCancelling, StateConfirmed, StateCancelled:
		return true
	}
	return false
}

// Branch is one participant's part of a transaction, as logged: enough
// to call its phases from any process, with no Go types.
type Branch struct {
	// ID is the branch's ID within the transaction (the tcc branch
	// header).
	ID string `json:"id"`
	// Service is the participant's discovery name.
	Service string `json:"service"`
	// Instance is the ID of the participant instance that every phase of
	// the branch goes to; empty means any instance.
	Instance string `json:"instance,omitempty"`
	// Try, Confirm and Cancel are the phases' procedures.
	Try     string `json:"try"`
	Confirm string `json:"confirm"`
	Cancel  string `json:"cancel"`
	// Request is the request message of every phase, protobuf-encoded.
	Request []byte `json:"request,omitempty"`
	// Done reports that the decided phase (Confirm or Cancel) succeeded.
	Done bool `json:"done,omitempty"`
	// Error is the last failure of the branch's current phase, if any.
	Error string `json:"error,omitempty"`
}

// Record is a transaction's state in the log.
type Record struct {
	// ID is the transaction ID (1 to MaxIDLen of [A-Za-z0-9_-]).
	ID string `json:"id"`
	// State is where the transaction is.
	State State `json:"state"`
	// Branches are the participants, in the order they were added.
	Branches []Branch `json:"branches"`
	// Coordinator names the process that began the transaction.
	Coordinator string `json:"coordinator,omitempty"`
	// Created is when the transaction began; Deadline is when an
	// undecided transaction is cancelled by recovery.
	Created  time.Time `json:"created"`
	Deadline time.Time `json:"deadline"`
	// Updated is when this record was written.
	Updated time.Time `json:"updated"`
	// Attempts counts the rounds of Confirm or Cancel that did not finish
	// every branch.
	Attempts int `json:"attempts,omitempty"`
	// Cause says why a cancel was decided (a Try's refusal, the timeout).
	Cause string `json:"cause,omitempty"`
	// Nonce identifies the write, so that a writer whose acknowledgement
	// was lost can tell whether its write landed.
	Nonce string `json:"nonce,omitempty"`

	// Seq is the stream sequence of the record's message: what the next
	// conditional write expects. Not part of the encoding.
	Seq uint64 `json:"-"`
}

// Limits of a record.
const (
	// MaxIDLen bounds transaction and branch IDs.
	MaxIDLen = 64
	// MaxBranches bounds the branches of a transaction.
	MaxBranches = 64
	// MaxRecordSize bounds an encoded record, within the node's
	// maximum message size.
	MaxRecordSize = 512 << 10
	// maxText bounds free-text fields (errors, causes).
	maxText = 512
)

// ErrInvalid is returned for a record that breaks the limits or is not
// well formed, before it is written or when it is read.
var ErrInvalid = errors.New("txlog: invalid record")

// checkID reports whether id is 1 to MaxIDLen bytes of [A-Za-z0-9_-]: a
// single subject token.
func checkID(what, id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("%w: %s is %d bytes, want 1 to %d", ErrInvalid, what, len(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %s has byte 0x%02x at %d outside [A-Za-z0-9_-]", ErrInvalid, what, c, i)
		}
	}
	return nil
}

// Validate reports whether r is well formed.
func (r *Record) Validate() error {
	if err := checkID("transaction ID", r.ID); err != nil {
		return err
	}
	if !r.State.valid() {
		return fmt.Errorf("%w: state %q", ErrInvalid, r.State)
	}
	if len(r.Branches) == 0 || len(r.Branches) > MaxBranches {
		return fmt.Errorf("%w: %d branches, want 1 to %d", ErrInvalid, len(r.Branches), MaxBranches)
	}
	seen := make(map[string]bool, len(r.Branches))
	for i := range r.Branches {
		b := &r.Branches[i]
		if err := checkID("branch ID", b.ID); err != nil {
			return err
		}
		if seen[b.ID] {
			return fmt.Errorf("%w: branch ID %q repeated", ErrInvalid, b.ID)
		}
		seen[b.ID] = true
		if b.Service == "" || b.Try == "" || b.Confirm == "" || b.Cancel == "" {
			return fmt.Errorf("%w: branch %q lacks its service or a procedure", ErrInvalid, b.ID)
		}
	}
	if r.Deadline.IsZero() {
		return fmt.Errorf("%w: no deadline", ErrInvalid)
	}
	return nil
}

// encode validates r and returns its encoding.
func (r *Record) encode() ([]byte, error) {
	r.Cause = cut(r.Cause)
	for i := range r.Branches {
		r.Branches[i].Error = cut(r.Branches[i].Error)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(data) > MaxRecordSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, more than %d", ErrInvalid, len(data), MaxRecordSize)
	}
	return data, nil
}

// Decode parses and validates a record's encoding.
func Decode(data []byte) (*Record, error) {
	if len(data) > MaxRecordSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalid, len(data), MaxRecordSize)
	}
	r := new(Record)
	if err := json.Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// Clone returns a deep copy of r.
func (r *Record) Clone() *Record {
	c := *r
	c.Branches = append([]Branch(nil), r.Branches...)
	return &c
}

func cut(s string) string {
	if len(s) <= maxText {
		return s
	}
	s = s[:maxText]
	for len(s) > 0 && s[len(s)-1]&0xC0 == 0x80 { // do not end inside a UTF-8 sequence
		s = s[:len(s)-1]
	}
	if len(s) > 0 && s[len(s)-1] >= 0xC0 {
		s = s[:len(s)-1]
	}
	return s + "…"
}
