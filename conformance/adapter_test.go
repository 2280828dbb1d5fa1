package conformance_test

import (
	"testing"

	"github.com/distkit-go/distkit/conformance"
)

// The example's adapter passes the backend contract and agrees with the
// reference on every parity scenario (the memory backend's own test runs
// RunPrimitives).
func TestExampleAdapter(t *testing.T) {
	conformance.RunBackend(t, newHarness)
	conformance.RunParity(t, conformance.MemoryHarness, newHarness)
}
