//go:build chaos

package chaos

import (
	"testing"
	"time"

	"github.com/distkit-go/distkit/conformance"
	"github.com/distkit-go/distkit/internal/drivertest"
)

// TestFaultMatrix is the full form of the fault matrix make test runs in
// short: more calls per fault and the Sentinel failover fault, for every
// client kind of both drivers. Counts per cell are logged.
func TestFaultMatrix(t *testing.T) {
	o := conformance.FaultOptions{Calls: 10, Failover: true, OutageBound: time.Second}
	t.Run("goredis", func(t *testing.T) { drivertest.RunFaults(t, &faultEnv, "goredis", drivertest.GoredisKinds, o) })
	ro := o
	ro.ConnectSlack = drivertest.RueidisFaults.ConnectSlack
	t.Run("rueidis", func(t *testing.T) { drivertest.RunFaults(t, &faultEnv, "rueidis", drivertest.RueidisKinds, ro) })
}
