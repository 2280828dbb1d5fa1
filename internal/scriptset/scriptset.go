// Package scriptset lists every Lua script distkit's primitives run, for
// preloading them into a server's script cache (cmd/distkit scripts load):
// after a restart or failover the cache is empty, and the first call of
// each script then costs an extra round trip (EVALSHA answered NOSCRIPT,
// then EVAL).
package scriptset

import (
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/counterscript"
	"github.com/distkit-go/distkit/internal/electscript"
	"github.com/distkit-go/distkit/internal/icscript"
	"github.com/distkit-go/distkit/internal/lockscript"
	"github.com/distkit-go/distkit/internal/ratelimitscript"
	"github.com/distkit-go/distkit/internal/semscript"
)

// All returns the scripts of every primitive and of the driver toolkit's
// leases, each once, in a stable order.
func All() []*driver.Script {
	var out []*driver.Script
	seen := map[string]bool{}
	for _, group := range [][]*driver.Script{
		counterscript.All(),
		lockscript.All(),
		icscript.All(),
		ratelimitscript.All(),
		semscript.All(),
		electscript.All(),
		{driver.HeartbeatScript, driver.AcquireLeaseScript, driver.RenewLeaseScript, driver.ReleaseLeaseScript},
	} {
		for _, s := range group {
			if !seen[s.SHA()] {
				seen[s.SHA()] = true
				out = append(out, s)
			}
		}
	}
	return out
}
