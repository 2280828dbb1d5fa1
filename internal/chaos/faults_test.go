//go:build chaos

package chaos

import (
	"fmt"
	"math/rand/v2"
	"time"
)

func rngFrom(s uint64) *rand.Rand { return rand.New(rand.NewPCG(s, s>>7)) }

// injectFaults, for d, hits a random client every 120 ms with a random
// fault lasting 80 ms: latency, blackhole or cut. It returns the counts.
func injectFaults(r *rand.Rand, cs []*client, d time.Duration) map[string]int {
	counts := map[string]int{}
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		c := cs[r.IntN(len(cs))]
		switch r.IntN(3) {
		case 0:
			c.proxy.Latency(time.Duration(5+r.IntN(30)) * time.Millisecond)
			counts["latency"]++
		case 1:
			c.proxy.Blackhole(true)
			counts["blackhole"]++
		case 2:
			c.proxy.Cut()
			counts["cut"]++
		}
		time.Sleep(80 * time.Millisecond)
		c.proxy.Restore()
		time.Sleep(40 * time.Millisecond)
	}
	return counts
}

func (c *client) String() string { return fmt.Sprintf("client via %s", c.proxy.Addr) }
