package lock

// SetPausedForTest makes the session's keepalive act like a paused process:
// it neither refreshes nor checks deadlines until unpaused.
func (s *Session) SetPausedForTest(p bool) { s.paused.Store(p) }

// SetPausedForTest pauses the keepalive of the current grant's session.
func (m *Mutex) SetPausedForTest(p bool) { m.h.setPausedForTest(p) }

// SetPausedForTest pauses the keepalive of the current leadership's
// session.
func (e *Election) SetPausedForTest(p bool) { e.h.setPausedForTest(p) }

func (h *holder) setPausedForTest(p bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.g != nil {
		h.g.s.paused.Store(p)
	}
}
