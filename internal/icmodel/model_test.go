package icmodel_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/distkit-go/distkit/internal/icmodel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Short seeds on the memory backend (make test); internal/chaos runs long
// ones.
func TestModelMemory(t *testing.T) {
	icmodel.Run(t, icmodel.NewMemoryEnv(), icmodel.Config{
		Seeds: []uint64{1, 2, 3, 4}, Steps: 80, Local: 4, CheckEach: 30, DeadAfter: 300 * time.Millisecond,
	})
}
