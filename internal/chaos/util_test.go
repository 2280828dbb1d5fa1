//go:build chaos

package chaos

import (
	"sort"
	"time"
)

// maxIn is the most timestamps inside any interval (t-d, t].
func maxIn(ts []time.Time, d time.Duration) int {
	s := append([]time.Time(nil), ts...)
	sort.Slice(s, func(i, j int) bool { return s[i].Before(s[j]) })
	best, lo := 0, 0
	for hi := range s {
		for !s[lo].After(s[hi].Add(-d)) {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}
