package testkit

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
)

// Hang wraps a backend so that chosen calls hang until their context is
// done, as a server that stopped answering would (a driver honours its
// context). Entered receives the name of every call that starts hanging.
type Hang struct {
	backend.Backend
	// Match selects the calls that hang: a script's name, or "RenewLease",
	// "AcquireLease", "ReleaseLease", "Heartbeat". Nil hangs nothing.
	match   atomic.Pointer[func(name string) bool]
	Entered chan string
	hanging atomic.Int64
}

// NewHang wraps b; nothing hangs until HangOn.
func NewHang(b backend.Backend) *Hang { return &Hang{Backend: b, Entered: make(chan string, 1024)} }

// HangOn makes every later call whose name match accepts hang.
func (h *Hang) HangOn(match func(name string) bool) { h.match.Store(&match) }

func (h *Hang) hangs(ctx context.Context, name string) error {
	m := h.match.Load()
	if m == nil || *m == nil || !(*m)(name) {
		return nil
	}
	h.hanging.Add(1)
	defer h.hanging.Add(-1)
	select {
	case h.Entered <- name:
	default:
	}
	<-ctx.Done()
	return fmt.Errorf("%w: %s: %w", backend.ErrNotApplied, name, ctx.Err())
}

// EvalScript hangs or delegates.
func (h *Hang) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	if err := h.hangs(ctx, s.Name()); err != nil {
		return backend.Value{}, err
	}
	return h.Backend.EvalScript(ctx, s, keys, args...)
}

// EvalScripts hangs when any call of the batch hangs, or delegates.
func (h *Hang) EvalScripts(ctx context.Context, calls []backend.Call) []backend.Result {
	for _, c := range calls {
		if err := h.hangs(ctx, c.Script.Name()); err != nil {
			out := make([]backend.Result, len(calls))
			for i := range out {
				out[i].Err = err
			}
			return out
		}
	}
	return h.Backend.EvalScripts(ctx, calls)
}

// RenewLease hangs or delegates.
func (h *Hang) RenewLease(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	if err := h.hangs(ctx, "RenewLease"); err != nil {
		return false, err
	}
	return h.Backend.RenewLease(ctx, key, owner, ttl)
}

// WaitEntered waits until a call named name hangs.
func (h *Hang) WaitEntered(t *testing.T, name string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case n := <-h.Entered:
			if n == name {
				return
			}
		case <-deadline:
			t.Fatalf("no %s call started within 10s", name)
		}
	}
}

// WaitIdle waits (up to d) until no call hangs any more: the calls the
// library still makes in the background have given up.
func (h *Hang) WaitIdle(t *testing.T, d time.Duration) {
	t.Helper()
	Eventually(t, d, "hung calls end", func() bool { return h.hanging.Load() == 0 })
}

// ReturnsWithin runs f (a Close or Release given a context of budget) and
// fails the test unless it returns within budget plus slack. It returns
// f's error; when f does not return in time, unblock is called (to let
// the hung call end) and f is still awaited so no goroutine leaks.
func ReturnsWithin(t *testing.T, what string, budget, slack time.Duration, f func(ctx context.Context) error, unblock func()) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- f(ctx) }()
	select {
	case err := <-errc:
		if el := time.Since(start); el > budget+slack {
			t.Errorf("%s returned after %v, its context allowed %v", what, el.Round(time.Millisecond), budget)
		}
		return err
	case <-time.After(budget + slack):
		t.Errorf("%s did not return within %v of its %v context (still blocked)", what, slack, budget)
		unblock()
		return <-errc
	}
}

// Gate wraps a backend so that the first call of one script waits, before
// it reaches the backend, until Open: a request that the network delays
// while other calls go through.
type Gate struct {
	backend.Backend
	name    string
	once    atomic.Bool
	Entered chan struct{} // closed when the gated call is waiting
	open    chan struct{}
}

// NewGate gates the first call of the script named name.
func NewGate(b backend.Backend, name string) *Gate {
	return &Gate{Backend: b, name: name, Entered: make(chan struct{}), open: make(chan struct{})}
}

// Open lets the gated call through.
func (g *Gate) Open() { close(g.open) }

// EvalScript delays the gated call, then delegates.
func (g *Gate) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	if s.Name() == g.name && g.once.CompareAndSwap(false, true) {
		close(g.Entered)
		<-g.open
	}
	return g.Backend.EvalScript(ctx, s, keys, args...)
}
