package lock

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit-go/distkit"
)

// Guard is one held acquisition. It renews its lease every TTL/3 (from a
// timer: at most one goroutine, only while a renewal runs) until Release; a Guard dropped without Release stops renewing
// when it is garbage-collected, and its lease then expires by TTL.
type Guard struct{ g *guardCore }

// guardCore is what the renewal timer shares; it does not reference the
// Guard, so an abandoned Guard can be collected.
type guardCore struct {
	c       *core
	m       mode
	id      string // "<owner>:<acquisition>"
	value   string // id + ":" + token
	token   int64
	attempt int
	state   atomic.Int32

	mu      sync.Mutex
	done    chan struct{}
	cause   error // why done was closed
	cancels []context.CancelCauseFunc

	renewMu sync.Mutex // held while a renewal runs
	timer   *time.Timer
	halted  bool // renewal stopped (guarded by renewMu)

	// stopping is set by stopRenewing, which also cancels the renewal in
	// flight (renewCancel), so that Release does not wait for a renewal
	// hung on the backend. Both guarded by cancelMu.
	cancelMu    sync.Mutex
	stopping    bool
	renewCancel context.CancelFunc

	released bool // guarded by mu
}

func newGuard(c *core, m mode, id string, token int64, attempt int) *Guard {
	gc := &guardCore{
		c: c, m: m, id: id, value: id + ":" + tokenString(token), token: token, attempt: attempt,
		done: make(chan struct{}),
	}
	// Renewals run from a timer: one goroutine at a time, and none at all
	// between renewals or for a lock released before its first renewal.
	gc.renewMu.Lock()
	gc.timer = time.AfterFunc(c.ttl/3, gc.renew)
	gc.renewMu.Unlock()
	g := &Guard{g: gc}
	runtime.AddCleanup(g, func(gc *guardCore) { gc.stopRenewing() }, gc)
	return g
}

// Token is the fencing token of this acquisition: strictly greater than
// the token of every earlier acquisition of the same name. Pass it to the
// protected resource and have it reject lower tokens.
func (g *Guard) Token() int64 { return g.g.token }

// Attempt is the zero-based attempt on which the lock was obtained.
func (g *Guard) Attempt() int { return g.g.attempt }

// State reports the lease as of the last renewal or release; no I/O.
func (g *Guard) State() State { return State(g.g.state.Load()) }

// Done is closed when the lease is lost or released.
func (g *Guard) Done() <-chan struct{} { return g.g.done }

// Context returns a context derived from ctx that is cancelled when the
// lease is lost (context.Cause is distkit.ErrLeaseLost) or released.
func (g *Guard) Context(ctx context.Context) context.Context {
	cctx, cancel := context.WithCancelCause(ctx)
	gc := g.g
	gc.mu.Lock()
	select {
	case <-gc.done:
		cancel(gc.cause)
	default:
		gc.cancels = append(gc.cancels, cancel)
	}
	gc.mu.Unlock()
	return cctx
}

var errReleased = fmt.Errorf("lock: %w", context.Canceled)

// closeDone closes Done once, cancelling derived contexts with cause.
func (gc *guardCore) closeDone(cause error) {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	select {
	case <-gc.done:
		return
	default:
	}
	gc.cause = cause
	for _, c := range gc.cancels { // before Done, so a Done observer sees them cancelled
		c(cause)
	}
	gc.cancels = nil
	close(gc.done)
}

func (gc *guardCore) markLost() {
	if gc.state.CompareAndSwap(int32(Acquired), int32(Lost)) {
		gc.closeDone(fmt.Errorf("lock %q: %w", gc.c.name, distkit.ErrLeaseLost))
	}
}

// stopRenewing stops renewals: it cancels one in progress and waits for it
// to return.
func (gc *guardCore) stopRenewing() {
	gc.cancelMu.Lock()
	gc.stopping = true
	if gc.renewCancel != nil {
		gc.renewCancel()
	}
	gc.cancelMu.Unlock()
	gc.renewMu.Lock()
	gc.halted = true
	gc.timer.Stop()
	gc.renewMu.Unlock()
}

// renew runs every TTL/3. A refused renewal is final; a failed one marks
// the guard Lost and keeps trying, returning to Acquired if the lease still
// carries this acquisition's value.
func (gc *guardCore) renew() {
	gc.renewMu.Lock()
	defer gc.renewMu.Unlock()
	if gc.halted {
		return
	}
	every := gc.c.ttl / 3
	ctx, cancel := context.WithTimeout(context.Background(), every)
	gc.cancelMu.Lock()
	if gc.stopping {
		gc.cancelMu.Unlock()
		cancel()
		return
	}
	gc.renewCancel = cancel
	gc.cancelMu.Unlock()
	ok, err := gc.c.renew(ctx, gc.m, gc.value)
	cancel()
	gc.cancelMu.Lock()
	gc.renewCancel = nil
	stopping := gc.stopping
	gc.cancelMu.Unlock()
	if stopping { // Release (or the guard's collection) took over; it was maybe cancelled
		return
	}
	switch {
	case err != nil:
		gc.markLost()
	case !ok:
		gc.markLost()
		return
	default:
		gc.state.CompareAndSwap(int32(Lost), int32(Acquired))
	}
	gc.timer.Reset(every)
}

// Release stops renewal and deletes the lease if this acquisition still
// holds it, waking waiters. It returns the final state: Released with a
// nil error; Lost with an error matching distkit.ErrNotHeld when the lease
// had expired or belongs to someone else (their lease is untouched); or
// the current state with the backend's error, in which case Release may be
// called again (meanwhile the lease is no longer renewed and expires by
// TTL). Releasing twice returns Released, nil.
func (g *Guard) Release(ctx context.Context) (State, error) {
	gc := g.g
	gc.stopRenewing()
	gc.mu.Lock()
	done := gc.released
	gc.mu.Unlock()
	if done {
		return Released, nil
	}
	ok, err := gc.c.release(ctx, gc.m, gc.id)
	if err != nil {
		return g.State(), fmt.Errorf("lock %q: release: %w", gc.c.name, err)
	}
	if !ok {
		gc.state.Store(int32(Lost))
		gc.closeDone(fmt.Errorf("lock %q: %w", gc.c.name, distkit.ErrLeaseLost))
		return Lost, fmt.Errorf("lock %q: release: %w", gc.c.name, distkit.ErrNotHeld)
	}
	gc.mu.Lock()
	gc.released = true
	gc.mu.Unlock()
	gc.state.Store(int32(Released))
	gc.closeDone(errReleased)
	return Released, nil
}
