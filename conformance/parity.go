package conformance

import (
	"testing"

	"github.com/distkit-go/distkit/internal/parity"
)

// RunParity runs the same deterministic sequence of operations of every
// primitive (and of the lease and heartbeat scripts) on a backend from
// reference and one from subject, and fails on the first step whose result
// or error class differs. Use MemoryHarness as the reference: a driver
// that runs Lua then proves it agrees with the Go twin of every script.
func RunParity(t *testing.T, reference, subject NewHarness) {
	parity.Run(t, internal(reference), internal(subject))
}
