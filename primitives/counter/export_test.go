package counter

// Queued reports how many operations wait in c's group-commit queue.
func Queued(c *Strict) int {
	if c.g == nil {
		return 0
	}
	c.g.mu.Lock()
	defer c.g.mu.Unlock()
	return len(c.g.queue)
}
