package scriptset_test

import (
	"testing"

	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/counterscript"
	"github.com/distkit-go/distkit/internal/electscript"
	"github.com/distkit-go/distkit/internal/icscript"
	"github.com/distkit-go/distkit/internal/lockscript"
	"github.com/distkit-go/distkit/internal/ratelimitscript"
	"github.com/distkit-go/distkit/internal/scriptset"
	"github.com/distkit-go/distkit/internal/semscript"
)

// All holds every script of the primitives' script packages, each once.
func TestAll(t *testing.T) {
	all := scriptset.All()
	seen := map[string]bool{}
	for _, s := range all {
		if seen[s.SHA()] {
			t.Errorf("%s listed twice", s.Name())
		}
		seen[s.SHA()] = true
	}
	for _, group := range [][]*driver.Script{counterscript.All(), lockscript.All(), icscript.All(), ratelimitscript.All(), semscript.All(), electscript.All(),
		{driver.HeartbeatScript, driver.AcquireLeaseScript, driver.RenewLeaseScript, driver.ReleaseLeaseScript}} {
		for _, s := range group {
			if !seen[s.SHA()] {
				t.Errorf("%s missing", s.Name())
			}
		}
	}
}
