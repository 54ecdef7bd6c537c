package lock

import "github.com/concordrpc/concord/coord"

// WaitFallbacksForTest returns how often the session's acquisitions could
// not create their watch, and how often they were woken by the fallback
// timer rather than by the watch.
func (s *Session) WaitFallbacksForTest() (watchFailed, timerWakes int64) {
	return s.fallbacks.watchFailed.Load(), s.fallbacks.timerWakes.Load()
}

// SharedWatchesForTest returns how many shared watches node has, and how
// many waiters use them.
func SharedWatchesForTest(node *coord.Node) (watches, waiters int) {
	h := watchHubOf(node)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, sw := range h.keys {
		watches++
		waiters += sw.refs
	}
	return watches, waiters
}
