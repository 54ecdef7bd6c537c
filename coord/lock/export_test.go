package lock

// SetPausedForTest stops the session's keepalive loop, and only it: the
// loop neither refreshes nor checks deadlines until unpaused, as it would
// in a paused process, while the rest of the process (the NATS
// connection, the caller) runs on. Tests of a real process pause use
// SIGSTOP (TestStoppedProcessLosesLock).
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

// WithGrantedHookForTest makes f run when an acquisition has its grant,
// before Lock, TryLock or Campaign checks that it is live and returns it;
// f gets the grant's session.
func WithGrantedHookForTest(f func(*Session)) Option {
	return optionFunc(func(c *config) {
		if c.hooks == nil {
			c.hooks = &testHooks{}
		}
		c.hooks.granted = f
	})
}

// WithReleasedHookForTest makes f replace the answer (the marker's
// sequence and the error) to every release write of the grants' sessions.
func WithReleasedHookForTest(f func(seq uint64, err error) (uint64, error)) Option {
	return optionFunc(func(c *config) {
		if c.hooks == nil {
			c.hooks = &testHooks{}
		}
		c.hooks.released = f
	})
}

// WithQueuedHookForTest makes f run when Lock or Campaign has its place
// (see testHooks.queued): its ticket is published, so every later ticket
// is behind it, or it took the key, free with nobody waiting; f gets the
// acquisition's session.
func WithQueuedHookForTest(f func(*Session)) Option {
	return optionFunc(func(c *config) {
		if c.hooks == nil {
			c.hooks = &testHooks{}
		}
		c.hooks.queued = f
	})
}
