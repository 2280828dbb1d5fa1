package instancecounter

import (
	"context"
	"sync"
)

// gate lets operations run together and a rejoin or Close alone: a rejoin
// snapshots this instance's slices only once every operation in flight has
// recorded its reply, and no operation runs while it does; Close removes
// the slices only after the operations in flight. Waiting honours the
// caller's context; a waiting writer holds off new readers.
type gate struct {
	mu      sync.Mutex
	readers int
	writer  bool          // held or wanted by a writer
	wake    chan struct{} // closed (and replaced) when readers drain or a writer leaves
}

func newGate() *gate { return &gate{wake: make(chan struct{})} }

func (g *gate) signal() {
	close(g.wake)
	g.wake = make(chan struct{})
}

// rlock enters as an operation.
func (g *gate) rlock(ctx context.Context) error {
	g.mu.Lock()
	for g.writer {
		w := g.wake
		g.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return ctx.Err()
		}
		g.mu.Lock()
	}
	g.readers++
	g.mu.Unlock()
	return nil
}

func (g *gate) runlock() {
	g.mu.Lock()
	g.readers--
	if g.readers == 0 && g.writer {
		g.signal()
	}
	g.mu.Unlock()
}

// lock enters alone, once the operations in flight are done.
func (g *gate) lock(ctx context.Context) error {
	g.mu.Lock()
	for g.writer {
		w := g.wake
		g.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return ctx.Err()
		}
		g.mu.Lock()
	}
	g.writer = true
	for g.readers > 0 {
		w := g.wake
		g.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			g.mu.Lock()
			g.writer = false
			g.signal()
			g.mu.Unlock()
			return ctx.Err()
		}
		g.mu.Lock()
	}
	g.mu.Unlock()
	return nil
}

func (g *gate) unlock() {
	g.mu.Lock()
	g.writer = false
	g.signal()
	g.mu.Unlock()
}
