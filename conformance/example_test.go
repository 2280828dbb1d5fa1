package conformance_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/conformance"
)

// countingBackend stands for a third-party driver: a backend that counts
// the scripts it runs and hands them to an in-memory server. A real driver
// would talk to its own server instead.
type countingBackend struct {
	*memory.Backend
	evals atomic.Int64
}

func (b *countingBackend) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	b.evals.Add(1)
	return b.Backend.EvalScript(ctx, s, keys, args...)
}

// harness adapts the driver to the suite: every backend it hands out is a
// client of one server, and Wait lets that server's time pass.
type harness struct{ server *memory.Backend }

func newHarness(*testing.T) conformance.Harness {
	return &harness{server: memory.New(memory.Options{})}
}

func (h *harness) NewBackend(*testing.T) backend.Backend {
	return &countingBackend{Backend: h.server.Connect()}
}

func (h *harness) Wait(_ *testing.T, d time.Duration) { h.server.Advance(d) }

// FakeTime tells the suite that server time moves only with Wait.
func (h *harness) FakeTime() bool { return true }

// A driver's test file adapts the driver to a Harness and runs the suite:
//
//	func TestConformance(t *testing.T) {
//		conformance.RunBackend(t, newHarness)
//		conformance.RunPrimitives(t, newHarness)
//		conformance.RunParity(t, conformance.MemoryHarness, newHarness)
//	}
func Example() {
	var _ conformance.NewHarness = newHarness
}
