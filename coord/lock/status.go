package lock

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/internal/condkv"
)

// MaxStatusEntries bounds each list of a Status: past it, the first
// MaxStatusEntries names in byte order are listed and Truncated is set.
const MaxStatusEntries = 100

// maxHolderLen bounds a holder or leader value as a Status shows it, in
// bytes; a longer value is cut and ends with "...".
const maxHolderLen = MaxHolderLen

// Key prefixes: a Mutex's key in BucketLocks is mutexPrefix and its name,
// an Election's in BucketElections electionPrefix and its name. Waiters'
// tickets (_cq.<key>.<contender>) are outside both, so that a status read
// of the prefix lists held keys alone, and no name can collide with a
// ticket.
const (
	mutexPrefix    = "mutex."
	electionPrefix = "election."
)

// Status lists the held locks and the elected leaders, for display (the
// status endpoint, the console, `concord status locks`).
type Status struct {
	// Held lists the Mutexes held, sorted by name.
	Held []HeldLock `json:"held"`
	// Elections lists the elections with a leader, sorted by name.
	Elections []ElectedLeader `json:"elections"`
	// Truncated is set when a list was cut at MaxStatusEntries, or the
	// bucket held more held keys than one read returns (then Unknown says
	// so). Waiters' tickets do not count towards that read's bound.
	Truncated bool `json:"truncated"`
	// Unknown is "" when both buckets were read; otherwise it says why
	// not, and Held and Elections are empty.
	Unknown string `json:"unknown"`
}

// HeldLock is one held Mutex.
type HeldLock struct {
	// Name is the lock's name, as stored (not escaped).
	Name string `json:"name"`
	// Holder is who holds it: the value given with WithHolder (an App
	// gives its host and process ID), or, for a holder that gave none,
	// "lease " and the grant's random attempt ID. Cut at 256 bytes.
	Holder string `json:"holder"`
	// Token is the grant's fencing token.
	Token uint64 `json:"token"`
	// ExpiresInMillis is how long the holder's last keepalive keeps the
	// key: its message's expiry (the server's timestamp plus its TTL)
	// less this process's clock at the read, so clock offsets between
	// the two skew it. It is about the TTL right after a keepalive, which
	// refreshes the key every TTL/3; -1 for a message without a TTL (not
	// written by this package).
	ExpiresInMillis int64 `json:"expires_in_ms"`
	// Waiting is how many Lock calls wait in line for it: tickets live at
	// the read that no grant has served yet (see the package doc,
	// "Order"); -1 when the tickets could not be read: more ticket keys
	// in the bucket than one read returns (condkv.MaxListed, counting the
	// tickets of every lock and those removed within the last second), or
	// a failed read. JSON without the field (from a status before it)
	// decodes as -1.
	Waiting int `json:"waiting"`
}

// UnmarshalJSON decodes h, with Waiting -1 when the JSON has no
// "waiting".
func (h *HeldLock) UnmarshalJSON(b []byte) error {
	type plain HeldLock
	p := plain{Waiting: -1}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*h = HeldLock(p)
	return nil
}

// ElectedLeader is the leader of one election.
type ElectedLeader struct {
	// Name is the election's name, as stored.
	Name string `json:"name"`
	// Leader is the value the leader campaigned with (cut at 256 bytes).
	Leader string `json:"leader"`
	// Token is the leader's term (its fencing token).
	Token uint64 `json:"token"`
	// ExpiresInMillis is as for HeldLock.
	ExpiresInMillis int64 `json:"expires_in_ms"`
	// Waiting is how many candidates wait in line, as for HeldLock.
	Waiting int `json:"waiting"`
}

// UnmarshalJSON decodes l, with Waiting -1 when the JSON has no
// "waiting".
func (l *ElectedLeader) UnmarshalJSON(b []byte) error {
	type plain ElectedLeader
	p := plain{Waiting: -1}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*l = ElectedLeader(p)
	return nil
}

// ReadStatus reads the held locks and elected leaders of node, and how
// many wait for each. It costs two batched direct reads of each of the two
// buckets (BucketLocks and BucketElections: the keys, then the waiters'
// tickets), the buckets concurrently, bounded by timeout (and ctx); it
// creates no consumer and sends no JetStream API request, so it is cheap
// to poll. Direct reads may be answered by a lagging replica: the result
// is for display, not for decisions. Released keys, and keys whose lease
// has passed by the time of the read, are not listed. A failure is
// reported in Status.Unknown, never as an error.
func ReadStatus(ctx context.Context, node *coord.Node, timeout time.Duration) *Status {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st := &Status{Held: []HeldLock{}, Elections: []ElectedLeader{}}
	var held, elected []liveKey
	var heldErr, electedErr error
	var heldCut, electedCut bool
	var wg sync.WaitGroup
	wg.Go(func() {
		held, heldCut, heldErr = readLive(ctx, node, coord.BucketLocks, mutexPrefix)
	})
	wg.Go(func() {
		elected, electedCut, electedErr = readLive(ctx, node, coord.BucketElections, electionPrefix)
	})
	wg.Wait()
	if err := cmp.Or(heldErr, electedErr); err != nil {
		st.Unknown = statusUnknown(err, timeout)
		st.Truncated = errors.Is(err, condkv.ErrTooMany)
		return st
	}
	for _, k := range held {
		st.Held = append(st.Held, HeldLock{Name: k.name, Holder: k.value, Token: k.token, ExpiresInMillis: k.left, Waiting: k.waiting})
	}
	for _, k := range elected {
		st.Elections = append(st.Elections, ElectedLeader{Name: k.name, Leader: k.value, Token: k.token, ExpiresInMillis: k.left, Waiting: k.waiting})
	}
	st.Truncated = heldCut || electedCut
	return st
}

// liveKey is a held key as a status read found it.
type liveKey struct {
	name, value string
	token       uint64
	left        int64  // ms until it expires; -1 without a TTL
	served      uint64 // the order of the ticket its grant served, or 0
	waiting     int    // live tickets after served; -1: unknown
}

// readLive reads the live keys of bucket that start with prefix (which
// is cut from the names), sorted by name and cut at MaxStatusEntries;
// cut reports whether there were more.
func readLive(ctx context.Context, node *coord.Node, bucket, prefix string) (keys []liveKey, cut bool, err error) {
	b := condkv.New(node.JetStream(), node.Conn(), bucket)
	now := time.Now()
	var out []liveKey
	err = b.LastAll(ctx, prefix+">", func(key string, e condkv.Entry) {
		name, ok := strings.CutPrefix(key, prefix)
		if !ok || name == "" {
			return
		}
		left := int64(-1)
		if !e.Expires.IsZero() {
			if left = e.Expires.Sub(now).Milliseconds(); left <= 0 {
				return // expired: the server removes it shortly
			}
		}
		out = append(out, liveKey{name: name, value: holderOf(e), token: tokenOf(e), left: left, served: servedOf(e.Header)})
	})
	if err != nil {
		return nil, false, err
	}
	slices.SortFunc(out, func(x, y liveKey) int { return strings.Compare(x.name, y.name) })
	cut = len(out) > MaxStatusEntries
	if cut {
		out = out[:MaxStatusEntries]
	}
	countWaiting(ctx, b, prefix, out, now)
	return out, cut, nil
}

// countWaiting sets the waiting count of each key in keys (held keys of
// the bucket, named without prefix, sorted by name) from one batched read
// of the bucket's tickets: the live tickets of a key whose order is past
// the one its grant served. A failed read sets every count to -1.
func countWaiting(ctx context.Context, b *condkv.Bucket, prefix string, keys []liveKey, now time.Time) {
	if len(keys) == 0 {
		return
	}
	tprefix := ticketToken + "." + prefix
	counts := map[string]int{}
	err := b.LastAll(ctx, tprefix+">", func(key string, e condkv.Entry) {
		rest, ok := strings.CutPrefix(key, tprefix)
		i := strings.LastIndexByte(rest, '.')
		if !ok || i <= 0 || !e.Expires.IsZero() && !e.Expires.After(now) {
			return
		}
		name := rest[:i]
		if j, found := slices.BinarySearchFunc(keys, name, func(k liveKey, n string) int { return strings.Compare(k.name, n) }); found && orderOf(e.Header, e.Seq) > keys[j].served {
			counts[name]++
		}
	})
	for i := range keys {
		keys[i].waiting = counts[keys[i].name]
		if err != nil {
			keys[i].waiting = -1
		}
	}
}

// holderOf returns the holder a key's message names: its data, or the
// grant's attempt ID when it has none.
func holderOf(e condkv.Entry) string {
	v := string(e.Data)
	if v == "" {
		return "lease " + e.Header.Get(hdrAttempt)
	}
	if len(v) > maxHolderLen {
		v = strings.ToValidUTF8(v[:maxHolderLen-3], "") + "..."
	}
	return v
}

// tokenOf returns a key's fencing token: its token header (refreshes) or
// its sequence (the grant's own message).
func tokenOf(e condkv.Entry) uint64 {
	if t, err := strconv.ParseUint(e.Header.Get(hdrToken), 10, 64); err == nil && t > 0 {
		return t
	}
	return e.Seq
}

func statusUnknown(err error, timeout time.Duration) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return fmt.Sprintf("no answer within %v", timeout)
	case errors.Is(err, condkv.ErrTooMany):
		return fmt.Sprintf("more than %d keys in a lock bucket: too many to list", condkv.MaxListed)
	}
	return err.Error()
}
