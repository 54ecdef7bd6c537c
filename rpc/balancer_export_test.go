package rpc

// Test hooks for the balancer tests in package rpc_test.

// InFlight returns the calls in flight that c counts for the instance at
// baseURL, and whether c keeps state for that instance.
func (c *Conn) InFlight(baseURL string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.endpoints[baseURL]
	if !ok {
		return 0, false
	}
	return e.inFlight.Load(), true
}

// Tracked returns the number of instances and of per-instance breakers that
// c keeps state for.
func (c *Conn) Tracked() (endpoints, breakers int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.endpoints {
		e.mu.Lock()
		breakers += len(e.breakers)
		e.mu.Unlock()
	}
	return len(c.endpoints), breakers
}

// WaitWarm waits until the work Serve or ServeHandler started ahead of the
// first calls (validation's warm-up) is done.
func (s *Server) WaitWarm() { s.warming.Wait() }

// ValidatorBuilt reports whether the server's default validator has been
// built.
func (s *Server) ValidatorBuilt() bool { return s.validate != nil && s.validate.built.Load() }
