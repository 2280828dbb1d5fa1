package conformance

import (
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
)

// MemoryHarness is the Harness of the memory backend: NewBackend connects
// new clients to one in-memory server, Wait advances its clock.
type MemoryHarness struct{ Root *memory.Backend }

// NewMemoryHarness wraps root.
func NewMemoryHarness(root *memory.Backend) *MemoryHarness { return &MemoryHarness{Root: root} }

// NewBackend returns a new client of the same server.
func (h *MemoryHarness) NewBackend(*testing.T) backend.Backend { return h.Root.Connect() }

// Wait advances server time by d.
func (h *MemoryHarness) Wait(_ *testing.T, d time.Duration) { h.Root.Advance(d) }

// FakeTime reports that server time moves only with Wait.
func (h *MemoryHarness) FakeTime() bool { return true }
