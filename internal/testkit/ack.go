package testkit

import (
	"context"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/counterscript"
)

// AckBackend is a memory backend that acknowledges counter.Lax flush
// batches without applying them: every batch is "applied" at once and
// every key reads 0 afterwards. Benchmarks of Lax's in-process path use it
// so that the flusher does its real work on distkit's side while the
// backend costs nothing; every other script runs on the memory backend.
type AckBackend struct {
	*memory.Backend
	values []backend.Value // reused reply: {1, "0", "0", ...}
}

// NewAckBackend returns an AckBackend.
func NewAckBackend() *AckBackend { return &AckBackend{Backend: memory.New(memory.Options{})} }

// EvalScript acknowledges flush batches and runs everything else.
func (a *AckBackend) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	if s.Name() != counterscript.Flush.Name() {
		return a.Backend.EvalScript(ctx, s, keys, args...)
	}
	n := 1 + (len(args)-2)/2
	for len(a.values) < n { // one flusher: calls never overlap
		if len(a.values) == 0 {
			a.values = append(a.values, backend.Int(1))
		} else {
			a.values = append(a.values, backend.Str("0"))
		}
	}
	return backend.Arr(a.values[:n]...), nil
}
