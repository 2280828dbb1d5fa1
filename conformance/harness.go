// Package conformance is the suite every distkit backend passes: the
// Backend contract (RunBackend), every primitive's behaviour
// (RunPrimitives) and, for a driver that runs the Lua scripts, agreement
// with the Go twins the memory backend runs (RunParity). distkit runs it on
// its memory backend, on miniredis and on real Redis (standalone and
// Cluster) through both Redis drivers; a third-party driver runs it from
// its own test file:
//
//	func TestConformance(t *testing.T) {
//		newHarness := conformance.MemoryHarness // your driver's NewHarness (see the example)
//		conformance.RunBackend(t, newHarness)
//		conformance.RunPrimitives(t, newHarness)
//		conformance.RunParity(t, conformance.MemoryHarness, newHarness)
//	}
//
// Each test calls newHarness for a fresh world; tests isolate their keys
// further with a unique prefix, so harnesses may share one server.
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
	// sleep on a real server. A harness whose server time moves only with
	// Wait also has the method FakeTime() bool, returning true: the suite
	// then lets time pass in small steps, so that the primitives' own
	// renewals keep up.
	Wait(t *testing.T, d time.Duration)
}

// ScriptFlusher is an optional capability of a Harness: emptying the
// server's script cache (SCRIPT FLUSH on every node), so that the suite
// checks recovery from NOSCRIPT. Without it that test is skipped.
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
