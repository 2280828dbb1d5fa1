package testkit

import (
	"context"
	"errors"
	"sync"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

// Faulty wraps any backend and injects faults into its script calls, chosen
// by script name, so that a test runs the same faults on every backend of
// the conformance suite (memory, miniredis, redis-server, Cluster).
type Faulty struct {
	backend.Backend

	mu    sync.Mutex
	hangs map[string]*Held
	fails map[string]error // "" = every script
}

// NewFaulty wraps b.
func NewFaulty(b backend.Backend) *Faulty {
	return &Faulty{Backend: b, hangs: map[string]*Held{}, fails: map[string]error{}}
}

// Held holds the calls of one script: each blocks, ignoring its context
// (a connection that stopped answering and a client that does not honour
// deadlines), until Release; then it runs on the wrapped backend, as a
// request that was on the wire all along would.
type Held struct {
	started     chan struct{}
	startOnce   sync.Once
	release     chan struct{}
	releaseOnce sync.Once
}

// Started is closed when the first call began hanging.
func (h *Held) Started() <-chan struct{} { return h.started }

// Release lets every held call (and every later one) go on.
func (h *Held) Release() { h.releaseOnce.Do(func() { close(h.release) }) }

// HangScript makes calls of the script named name hang until the returned
// Held is released.
func (f *Faulty) HangScript(name string) *Held {
	h := &Held{started: make(chan struct{}), release: make(chan struct{})}
	f.mu.Lock()
	f.hangs[name] = h
	f.mu.Unlock()
	return h
}

// FailScript makes calls of the script named name ("" for every script)
// fail with err without running; err that matches neither ErrNotApplied nor
// ErrIndeterminate is made to match ErrNotApplied. A nil err removes the
// fault.
func (f *Faulty) FailScript(name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fails, name)
		return
	}
	if !errors.Is(err, backend.ErrIndeterminate) {
		err = driver.NotApplied(err)
	}
	f.fails[name] = err
}

// EvalScript runs s on the wrapped backend unless a fault applies.
func (f *Faulty) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	f.mu.Lock()
	h := f.hangs[s.Name()]
	err := f.fails[s.Name()]
	if err == nil {
		err = f.fails[""]
	}
	f.mu.Unlock()
	if err != nil {
		return backend.Value{}, err
	}
	if h != nil {
		h.startOnce.Do(func() { close(h.started) })
		<-h.release
		ctx = context.Background()
	}
	return f.Backend.EvalScript(ctx, s, keys, args...)
}
