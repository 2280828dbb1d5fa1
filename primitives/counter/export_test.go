package counter

// Queued reports how many operations wait in c's group-commit queue.
func Queued(c *Strict) int {
	if c.g == nil {
		return 0
	}
	return c.g.Queued()
}
