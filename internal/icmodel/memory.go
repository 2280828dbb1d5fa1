package icmodel

import (
	"testing"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
)

// MemoryEnv runs histories on the memory backend: every instance is a
// goroutine with its own client (memory.Backend.Connect), whose
// FailAfterApply loses the reply of whatever script it runs next; data
// loss is FlushAll.
type MemoryEnv struct{ root *memory.Backend }

// NewMemoryEnv returns an Env on a fresh memory server.
func NewMemoryEnv() *MemoryEnv { return &MemoryEnv{root: memory.New(memory.Options{})} }

// Name implements Env.
func (e *MemoryEnv) Name() string { return "memory" }

// CanRemote implements Env: the memory server lives in this process.
func (e *MemoryEnv) CanRemote() bool { return false }

// Start implements Env.
func (e *MemoryEnv) Start(t *testing.T, spec Spec) Instance {
	c := e.root.Connect()
	l, err := NewLocal(c, spec, Faults{
		LoseNextAny: func() { c.FailAfterApply(1) },
		Disarm:      func() { c.FailAfterApply(0) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Backend implements Env.
func (e *MemoryEnv) Backend(*testing.T) backend.Backend { return e.root.Connect() }

// LoseData implements Env: FLUSHALL.
func (e *MemoryEnv) LoseData(*testing.T, string, []string) { e.root.FlushAll() }
