package metrics

import "time"

// SetClock replaces c's clock, for the cache tests.
func (c *Coord) SetClock(now func() time.Time) { c.now = now }
