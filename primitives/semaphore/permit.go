package semaphore

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/internal/lease"
)

// Permit is one held acquisition of n units. It renews its lease every
// TTL/3 (from a timer: at most one goroutine, only while a renewal runs)
// until Release, and reports the lease Lost exactly as a lock.Guard does.
// Keep it reachable for as long as you rely on it: a Permit that becomes
// unreachable without Release is reported Lost at once and its units are
// released.
//
// A nil *Permit holds nothing: Release returns Released and an error
// matching distkit.ErrNotHeld, Done is closed, Context is cancelled.
type Permit struct {
	l       *lease.Lease
	n       int64
	token   int64
	attempt int
}

func (s *Semaphore) newPermit(id string, n, token int64, attempt int, sent time.Time) *Permit {
	member := id + ":" + strconv.FormatInt(n, 10) + ":" + strconv.FormatInt(token, 10)
	l := lease.New(lease.Config{Name: s.errName, TTL: s.ttl, Ops: lease.Ops{
		Renew:   func(ctx context.Context) (bool, error) { return s.renew(ctx, member) },
		Release: func(ctx context.Context) (bool, error) { return s.releaseWithin(ctx, id) },
	}, OnEvent: s.obs.OnEvent(sent)}, sent)
	p := &Permit{l: l, n: n, token: token, attempt: attempt}
	// The lease never references p, so p can become unreachable while held.
	runtime.AddCleanup(p, (*lease.Lease).Abandon, l)
	return p
}

var nilDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func errNilPermit() error { return fmt.Errorf("semaphore: nil Permit: %w", distkit.ErrNotHeld) }

// N is the number of units this permit holds; 0 for a nil Permit.
func (p *Permit) N() int64 {
	if p == nil {
		return 0
	}
	return p.n
}

// Token is the fencing token of this acquisition: strictly greater than
// the token of every earlier acquisition of the same name. 0 for a nil
// Permit.
func (p *Permit) Token() int64 {
	if p == nil {
		return 0
	}
	return p.token
}

// Attempt is the zero-based attempt on which the permit was obtained.
func (p *Permit) Attempt() int {
	if p == nil {
		return 0
	}
	return p.attempt
}

// State reports the lease as of the last confirmed renewal or release; no
// I/O.
func (p *Permit) State() State {
	if p == nil {
		return Released
	}
	return State(p.l.State())
}

// Done is closed when the lease is lost or released.
func (p *Permit) Done() <-chan struct{} {
	if p == nil {
		return nilDone
	}
	return p.l.Done()
}

// Context returns a context derived from ctx that is cancelled when the
// lease is lost (cause matching distkit.ErrLeaseLost) or released (cause
// matching context.Canceled).
func (p *Permit) Context(ctx context.Context) context.Context {
	if p == nil {
		c, cancel := context.WithCancelCause(ctx)
		cancel(errNilPermit())
		return c
	}
	c := p.l.Context(ctx)
	runtime.KeepAlive(p)
	return c
}

// Release stops renewal and frees the units if this permit still holds
// them, waking waiters. It returns the final state: Released with a nil
// error; Lost with an error matching distkit.ErrNotHeld when the lease had
// been lost or was found expired; or the current state with the backend's
// error, in which case Release may be called again (meanwhile the lease is
// no longer renewed). Releasing twice returns Released, nil.
//
// Release returns soon after ctx ends even when the backend's driver does
// not honour ctx (rueidis while it dials): the outcome is then unknown
// (distkit.ErrIndeterminate) and Release may be called again.
func (p *Permit) Release(ctx context.Context) (State, error) {
	if p == nil {
		return Released, errNilPermit()
	}
	st, err := p.l.Release(ctx)
	runtime.KeepAlive(p)
	return State(st), err
}
