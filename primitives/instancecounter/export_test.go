package instancecounter

// Queued reports how many operations wait in s's group-commit queue.
func Queued(s *Strict) int {
	if s.c.grp == nil {
		return 0
	}
	return s.c.grp.Queued()
}
