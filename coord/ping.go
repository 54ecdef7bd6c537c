package coord

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// pingAttempt bounds one round trip of Ping while the connection claims to
// be up: a connection that was cut while the process was frozen (no FIN
// reached it, or none has been read yet) answers nothing, and is replaced.
const pingAttempt = time.Second

// Ping makes sure the node's connection to its servers works now, for a
// process that may have been frozen (a function between invocations, a
// stopped container) and so may hold a connection the server has dropped
// without the client noticing yet. It waits for one round trip to the
// server; when there is none within a second, or the connection is
// reconnecting (and so perhaps waiting out a reconnect backoff), it forces
// an immediate reconnect (at most once) and waits until the connection is
// up again with a round trip done. It returns nil then, or an
// error wrapping ErrUnavailable when ctx ends first, or ErrClosed.
//
// Ping says nothing about leases: a lock whose deadline passed during the
// freeze is lost whatever the connection's state (see lock.Mutex.Valid).
func (n *Node) Ping(ctx context.Context) error {
	nc := n.nc
	if nc == nil || nc.IsClosed() {
		return ErrClosed
	}
	events := nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer nc.RemoveStatusListener(events)
	poll := time.NewTicker(50 * time.Millisecond) // status events can be dropped
	defer poll.Stop()
	forced := false
	var last error
	for {
		switch nc.Status() {
		case nats.CLOSED:
			return ErrClosed
		case nats.CONNECTED:
			actx, cancel := context.WithTimeout(ctx, pingAttempt)
			err := nc.FlushWithContext(actx)
			cancel()
			if err == nil {
				return nil
			}
			last = err
		}
		if !forced && ctx.Err() == nil {
			// Silent while up by its own account, or reconnecting after a
			// backoff (two seconds by default) the caller should not wait
			// out: reconnect now.
			forced = true
			_ = nc.ForceReconnect()
			continue
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = fmt.Errorf("connection %s", nc.Status())
			}
			return fmt.Errorf("%w: no round trip to the server: %w (%w)", ErrUnavailable, last, ctx.Err())
		case <-events:
		case <-poll.C:
		}
	}
}
