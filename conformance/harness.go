// Package conformance is the one suite every distkit backend passes: the
// Backend contract (RunBackend) and every primitive's behaviour
// (RunPrimitives), run the same way on the memory backend, on miniredis and
// on real Redis (standalone and Cluster) through both Redis drivers.
//
// A backend package's test is a few lines:
//
//	func TestConformance(t *testing.T) {
//		conformance.RunBackend(t, newHarness)
//		conformance.RunPrimitives(t, newHarness)
//	}
//
// Each test calls newHarness for a fresh, isolated world; tests isolate
// their keys further with a unique prefix, so harnesses may share one
// server.
package conformance

import (
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/testkit"
)

// Harness gives the suite backends and control over time.
type Harness interface {
	// NewBackend returns a new client of the harness's server: every
	// backend of one harness sees the same keys (as separate processes on
	// one Redis would). The suite closes what it gets; the harness cleans
	// up the rest with t.Cleanup.
	NewBackend(t *testing.T) backend.Backend
	// Wait lets at least d of server time pass: advance a fake clock, or
	// sleep on a real server.
	Wait(t *testing.T, d time.Duration)
}

// ScriptFlusher is a Harness that can empty the server's script cache
// (SCRIPT FLUSH on every node), so the suite can check NOSCRIPT recovery.
type ScriptFlusher interface {
	FlushScripts(t *testing.T)
}

// NewHarness makes a fresh Harness for one test.
type NewHarness func(t *testing.T) Harness

// Unexported helpers of the suite's tests; internal/testkit has the code
// that distkit's other test suites share.

func prefix(t *testing.T) string                   { return testkit.Prefix(t) }
func tagged(prefix, name string) string            { return testkit.Tagged(prefix, name) }
func open(t *testing.T, h Harness) backend.Backend { return testkit.Open(t, h) }

// internal adapts a NewHarness to the internal packages' harness type (an
// interface with the same methods).
func internal(nh NewHarness) testkit.NewHarness {
	return func(t *testing.T) testkit.Harness { return nh(t) }
}
