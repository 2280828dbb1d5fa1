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
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
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

// prefix returns a key prefix unique to this test run, valid under the key
// rules (no ':', '{', '}').
func prefix(t *testing.T) string {
	var b [6]byte
	rand.Read(b[:])
	name := t.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, name)
	if len(name) > 40 {
		name = name[:40]
	}
	return "t-" + name + "-" + hex.EncodeToString(b[:])
}

// tagged returns a key in prefix's hash slot.
func tagged(prefix, name string) string { return "{" + prefix + "}:" + name }

// open returns a backend from h that is closed when t ends.
func open(t *testing.T, h Harness) backend.Backend {
	t.Helper()
	b := h.NewBackend(t)
	t.Cleanup(func() { b.Close() })
	return b
}
