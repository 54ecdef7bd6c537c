package lock

import "slices"

// turnQueue is the queue of one process's Lock or Campaign calls waiting
// for one key (over one connection), in the order they began waiting.
// Only the first contends for the key in the store; the others wait for
// their turn, which passes to the next as soon as the first has its grant,
// or gives up. So a holder that releases the key and locks it again queues
// behind the waiters of its process. A release in this process hands the
// sequence of its acknowledged release marker to the first in line, which
// then writes its grant expecting the key free at that sequence, without
// waiting for the watch or reading the key. The queue only orders this
// process's waiters and wakes them early: grants are decided by the
// conditional writes alone, and the first in line is woken by the key's
// watch as before, so a holder elsewhere (or a paused one here) is waited
// for exactly as without the queue.
type turnQueue struct {
	k     watchKey
	turns []*turn // in arrival order; turns[0] has the turn
}

// turn is one acquisition's place in a turnQueue.
type turn struct {
	hub   *watchHub
	q     *turnQueue
	ready chan struct{} // closed when this is the first in its queue
	freed chan uint64   // the latest release marker's sequence, for the first in line
	held  *entry        // set before ready is closed: the grant the one ahead just got, or nil
	left  bool          // guarded by hub.qmu
}

// enqueue appends a turn for k to its queue; it is ready at once if the
// queue was empty.
func (h *watchHub) enqueue(k watchKey) *turn {
	h.qmu.Lock()
	defer h.qmu.Unlock()
	q := h.queues[k]
	if q == nil {
		q = &turnQueue{k: k}
		h.queues[k] = q
	}
	t := &turn{hub: h, q: q, ready: make(chan struct{}), freed: make(chan uint64, 1)}
	q.turns = append(q.turns, t)
	if len(q.turns) == 1 {
		close(t.ready)
	}
	return t
}

// leave removes t from its queue, passing the turn on if t had it, with
// held: the grant t got, or nil. It is idempotent.
func (t *turn) leave(held *entry) {
	h := t.hub
	h.qmu.Lock()
	defer h.qmu.Unlock()
	if t.left {
		return
	}
	t.left = true
	q := t.q
	i := slices.Index(q.turns, t)
	q.turns = slices.Delete(q.turns, i, i+1)
	switch {
	case len(q.turns) == 0:
		if h.queues[q.k] == q {
			delete(h.queues, q.k)
		}
	case i == 0:
		q.turns[0].held = held
		close(q.turns[0].ready)
	}
}

// released tells the first in line for k, if any, that k is free at seq:
// the sequence of a release marker whose write was acknowledged.
func (h *watchHub) released(k watchKey, seq uint64) {
	h.qmu.Lock()
	defer h.qmu.Unlock()
	q := h.queues[k]
	if q == nil || len(q.turns) == 0 {
		return
	}
	t := q.turns[0]
	select {
	case <-t.freed: // replaced by the newer sequence
	default:
	}
	t.freed <- seq
}

// freedAt returns the sequence the last release in this process freed the
// key at, if one arrived since the last call.
func (t *turn) freedAt() (uint64, bool) {
	select {
	case seq := <-t.freed:
		return seq, true
	default:
		return 0, false
	}
}
