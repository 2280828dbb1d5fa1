package lock

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/internal/lease"
)

// Guard is one held acquisition. It renews its lease every TTL/3 (from a
// timer: at most one goroutine, only while a renewal runs) until Release,
// and reports the lease Lost exactly when the package documentation's
// "Leases" section says. Keep it reachable for as long as you rely on the
// lock (defer g.Release(ctx), or use Do): a Guard that becomes unreachable
// without Release is reported Lost at once (Done closes, contexts from
// Context are cancelled with a cause matching distkit.ErrLeaseLost) and
// its lease is released, never left to lapse silently while code holding
// only its Context or Done runs on.
//
// A nil *Guard holds nothing: Release returns Released and an error
// matching distkit.ErrNotHeld, Done is closed, Context is cancelled, so
// that "defer g.Release(ctx)" before checking the error is safe.
type Guard struct {
	l       *lease.Lease
	token   int64
	attempt int
}

// newGuard starts holding an acquisition confirmed by a request sent at
// sent.
func (c *core) newGuard(m mode, id string, token int64, attempt int, sent time.Time) *Guard {
	value := id + ":" + tokenString(token)
	l := lease.New(lease.Config{Name: c.errName, TTL: c.ttl, Ops: lease.Ops{
		Renew:   func(ctx context.Context) (bool, error) { return c.renew(ctx, m, value) },
		Release: func(ctx context.Context) (bool, error) { return c.releaseWithin(ctx, m, id) },
	}, OnEvent: c.obs.onEvent(m, sent)}, sent)
	g := &Guard{l: l, token: token, attempt: attempt}
	// The lease (its timers, the closures above) never references g, so g
	// can become unreachable while the lease is held.
	runtime.AddCleanup(g, (*lease.Lease).Abandon, l)
	return g
}

var nilDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func errNilGuard() error { return fmt.Errorf("lock: nil Guard: %w", distkit.ErrNotHeld) }

// Token is the fencing token of this acquisition: strictly greater than
// the token of every earlier acquisition of the same name. Pass it to the
// protected resource and have it reject lower tokens. 0 for a nil Guard.
func (g *Guard) Token() int64 {
	if g == nil {
		return 0
	}
	return g.token
}

// Attempt is the zero-based attempt on which the lock was obtained.
func (g *Guard) Attempt() int {
	if g == nil {
		return 0
	}
	return g.attempt
}

// State reports the lease as of the last confirmed renewal or release; no
// I/O. Past the lease's deadline without a confirmed renewal it is Lost,
// even if the guard's expiry timer has not run yet (State, Context, the Err
// method of a context from Context, and Release check the deadline
// themselves).
func (g *Guard) State() State {
	if g == nil {
		return Released
	}
	return State(g.l.State())
}

// Done is closed when the lease is lost or released.
func (g *Guard) Done() <-chan struct{} {
	if g == nil {
		return nilDone
	}
	return g.l.Done()
}

// Context returns a context derived from ctx that is cancelled when the
// lease is lost or released. Its context.Cause then says why: an error
// matching distkit.ErrLeaseLost that wraps what caused the loss (the
// renewal's last error, a refusal, a collected Guard), or one matching
// context.Canceled after Release.
func (g *Guard) Context(ctx context.Context) context.Context {
	if g == nil {
		c, cancel := context.WithCancelCause(ctx)
		cancel(errNilGuard())
		return c
	}
	c := g.l.Context(ctx)
	runtime.KeepAlive(g) // g in use: not collected (and reported lost) meanwhile
	return c
}

// Release stops renewal and deletes the lease if this acquisition still
// holds it, waking waiters. It returns the final state:
//   - Released with a nil error;
//   - Lost with an error matching distkit.ErrNotHeld (and
//     distkit.ErrLeaseLost) when the lease had been lost or was found
//     expired or someone else's (their lease is untouched);
//   - the current state with the backend's error, in which case Release
//     may be called again; meanwhile the lease is no longer renewed and is
//     reported Lost at its deadline.
//
// Release returns soon after ctx ends even when the backend's driver does
// not honour ctx (rueidis while it dials): the outcome is then unknown
// (distkit.ErrIndeterminate) and Release may be called again.
//
// Releasing twice returns Released, nil; concurrent calls are serialised
// (each returns what it would have returned in some sequential order). A
// call waiting for another one returns ctx's error when ctx ends first.
func (g *Guard) Release(ctx context.Context) (State, error) {
	if g == nil {
		return Released, errNilGuard()
	}
	st, err := g.l.Release(ctx)
	runtime.KeepAlive(g) // g in use: not collected (and reported lost) while releasing
	return State(st), err
}

// releaseWait bounds Do's release.
func (g *Guard) releaseWait() time.Duration { return min(g.l.TTL(), lease.MaxReleaseWait) }
