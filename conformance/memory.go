package conformance

import (
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
)

// MemoryHarness returns a Harness over a fresh memory backend (package
// backend/memory): every backend it hands out is a client of one
// in-memory server, and Wait advances that server's clock. It is the
// reference RunParity compares a driver with.
func MemoryHarness(*testing.T) Harness {
	return &memoryHarness{root: memory.New(memory.Options{})}
}

type memoryHarness struct{ root *memory.Backend }

func (h *memoryHarness) NewBackend(*testing.T) backend.Backend { return h.root.Connect() }

func (h *memoryHarness) Wait(_ *testing.T, d time.Duration) { h.root.Advance(d) }

// FakeTime reports that server time moves only with Wait.
func (h *memoryHarness) FakeTime() bool { return true }
