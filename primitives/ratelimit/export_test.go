package ratelimit

// LocalKeys counts the keys a Local holds state for.
func LocalKeys(l *Local) int {
	n := 0
	l.keys.each(func(string, *window) { n++ })
	return n
}
