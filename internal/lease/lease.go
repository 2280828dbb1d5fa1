// Package lease holds a lease in a backend on behalf of a primitive: the
// state machine behind lock.Guard, meant to be reused by every leased
// primitive (a semaphore permit, an election term). The primitive brings
// its own scripts as Ops; the Lease renews, decides when the lease is lost,
// reports it once and releases.
//
//	l := lease.New(lease.Config{
//		Name: `lock "orders-42"`,
//		TTL:  30 * time.Second,
//		Ops: lease.Ops{
//			Renew:   func(ctx context.Context) (bool, error) { return renewScript(ctx) },
//			Release: func(ctx context.Context) (bool, error) { return releaseScript(ctx) },
//		},
//	}, sent) // sent: when the acquiring request was sent
//	work := l.Context(ctx) // cancelled with the loss's cause
//	defer l.Release(ctx)
//
// # When a lease is lost
//
// The server sets a lease's expiry from its own clock when it runs the
// acquiring or renewing script, which is after the client sent it. So a
// lease confirmed by a request sent at s (client clock) is held at least
// until s + TTL, as long as the two clocks run at the same rate; the Lease
// counts it held until its deadline s + TTL − Margin(TTL), the margin
// covering a server clock that runs up to 1 % fast (and Redis's millisecond
// rounding). The deadline is measured on the client's monotonic clock:
// wall-clock jumps do not move it.
//
//	acquire sent at s, confirmed
//	|------ TTL/3 ------|------ TTL/3 ------|------ TTL/3 ------|
//	s                   renew (sent r1)     retry  retry  retry  s+TTL−margin
//	                    └ fails (timeout,   (every min(TTL/10,   └ no renewal confirmed:
//	                      reset, outage)     1 s), each bounded   Lost, cause wraps the
//	                                         by the deadline)     last error
//	                    └ confirmed: deadline becomes r1 + TTL − margin, next renewal at r1 + TTL/3
//	                    └ refused (the key is gone or someone else's): Lost at once
//
// A renewal that fails on a transient error (ErrNotApplied,
// ErrIndeterminate: a timeout, a reset, a server down) is retried until the
// deadline: the lease may well still be held, and reporting it lost would
// cancel the holder's work for nothing. A permanent error (ErrClosed, a
// script error) is not retried, but the lease is still reported lost only
// at the deadline, when it really may have expired.
//
// Lost is final: renewals stop (so that the lease, if it survives, expires
// and someone else can take it), Done is closed and every context from
// Context is cancelled with the same cause, which wraps distkit.ErrLeaseLost
// and the error that led to it. A process paused past its deadline (GC,
// SIGSTOP, a stopped VM) reports the loss as soon as it runs again, before
// it sends anything; State, Cause, Context and Release check the deadline
// themselves, and so does the Err method of a context from Context, so a
// late expiry timer (a paused process, a scheduler that has not run it
// yet) never shows a lease held past its deadline.
//
// Release stops renewals and removes the lease (owner-checked by the
// primitive's script). Concurrent Release calls are serialised: their
// outcomes are those of some sequential order.
//
// Abandon is for the owner's cleanup (runtime.AddCleanup) when the user's
// handle became unreachable without Release: the lease is reported Lost at
// once and released in the background, never left to lapse silently.
package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

// State is a lease's state.
type State int32

// States of a lease. The numbering matches lock.State.
const (
	Held State = iota
	Lost
	Released
)

// Ops are the primitive's operations on its lease.
type Ops struct {
	// Renew extends the lease by the TTL. true: extended; false with a nil
	// error: refused (the lease is gone or belongs to someone else), which
	// is final; an error: not known, retried until the deadline.
	Renew func(ctx context.Context) (bool, error)
	// Release removes the lease if it is still this holder's. true:
	// removed; false: it was gone or someone else's.
	Release func(ctx context.Context) (bool, error)
}

// Config describes a lease.
type Config struct {
	// Name names the lease in errors, e.g. `lock "orders-42"`.
	Name string
	// TTL is the lease's duration on the server; renewals run every TTL/3.
	TTL time.Duration
	Ops Ops
	// OnEvent, when set, is told the lease's state changes: each failed
	// renewal (RenewFailed, with its error), the first confirmed renewal
	// after failed ones (RenewRecovered), and the end (Lost with its cause,
	// or Released). It is called without the lease's lock held, from the
	// goroutine that noticed the change.
	OnEvent func(ev Event, err error)
}

// Event is a state change reported to Config.OnEvent.
type Event int

// Events.
const (
	RenewFailed Event = iota + 1
	RenewRecovered
	LostEvent
	ReleasedEvent
)

type event struct {
	ev  Event
	err error
}

// note queues ev for emit (with l.mu held).
func (l *Lease) note(ev Event, err error) {
	if l.cfg.OnEvent != nil {
		l.events = append(l.events, event{ev, err})
	}
}

// emit reports the queued events (without l.mu held).
func (l *Lease) emit() {
	if l.cfg.OnEvent == nil {
		return
	}
	l.mu.Lock()
	evs := l.events
	l.events = nil
	l.mu.Unlock()
	for _, e := range evs {
		l.cfg.OnEvent(e.ev, e.err)
	}
}

// Margin is the part of a TTL the Lease does not count on: 1 % (a server
// clock up to 1 % faster than the client's) plus 2 ms (rounding to whole
// milliseconds on the server).
func Margin(ttl time.Duration) time.Duration { return ttl/100 + 2*time.Millisecond }

// Valid reports whether a lease confirmed by a request sent at sent is
// still counted held now.
func Valid(sent time.Time, ttl time.Duration) bool {
	return time.Now().Before(sent.Add(ttl - Margin(ttl)))
}

// MaxReleaseWait bounds the background release of an abandoned lease.
const MaxReleaseWait = 5 * time.Second

// errReleased is the cause of a released lease's contexts.
var errReleased = fmt.Errorf("lease released: %w", context.Canceled)

// ErrReleased is the context cause after a successful Release; it matches
// context.Canceled.
var ErrReleased = errReleased

// Lease is a held lease. Its methods are safe for concurrent use.
type Lease struct {
	cfg   Config
	every time.Duration // TTL/3: renewal period, and the bound of one renewal
	retry time.Duration // between renewals that failed

	relSem chan struct{} // serialises Release

	mu          sync.Mutex
	state       State
	cause       error
	done        chan struct{}
	ctxs        []derived
	pruneAt     int
	deadline    time.Time // last confirmed expiry minus the margin (monotonic)
	lastErr     error     // of the renewals since the last confirmed one
	events      []event   // for Config.OnEvent, not yet reported
	halted      bool      // no more renewals (Release began, or abandoned)
	renewing    bool
	renewSent   time.Time // of the renewal in flight (renewing)
	cancelRenew context.CancelFunc
	renewT      *time.Timer
	expiryT     *time.Timer
}

type derived struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// New starts holding a lease that a request sent at sent acquired (or
// confirmed): renewals every TTL/3, counted from the send time of the last
// confirmed request (so a slow reply brings the next renewal forward), and
// loss at sent + TTL − Margin unless a renewal is confirmed first. The first renewal's timer and the
// expiry timer are the only resources; they stop on loss or release.
func New(cfg Config, sent time.Time) *Lease {
	l := &Lease{
		cfg:      cfg,
		every:    cfg.TTL / 3,
		retry:    min(cfg.TTL/10, time.Second),
		relSem:   make(chan struct{}, 1),
		done:     make(chan struct{}),
		pruneAt:  8,
		deadline: sent.Add(cfg.TTL - Margin(cfg.TTL)),
	}
	l.mu.Lock()
	l.renewT = time.AfterFunc(time.Until(sent.Add(l.every)), l.renew)
	l.expiryT = time.AfterFunc(time.Until(l.deadline), l.expire)
	l.mu.Unlock()
	return l
}

// State reports the lease's state; no I/O.
func (l *Lease) State() State {
	defer l.emit() // a loss checkDeadline found
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checkDeadline()
	return l.state
}

// checkDeadline reports a held lease lost once its deadline has passed,
// without waiting for the expiry timer, which may run late (a paused
// process, a busy scheduler). l.mu is held.
func (l *Lease) checkDeadline() {
	if l.state == Held && !time.Now().Before(l.deadline) {
		l.lose(l.expiredCause())
	}
}

// Done is closed when the lease is lost or released.
func (l *Lease) Done() <-chan struct{} { return l.done }

// Cause is why Done was closed: an error wrapping distkit.ErrLeaseLost,
// or ErrReleased; nil while held.
func (l *Lease) Cause() error {
	defer l.emit() // a loss checkDeadline found
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checkDeadline()
	return l.cause
}

// Deadline is when the lease stops being counted held unless a renewal is
// confirmed first (monotonic clock).
func (l *Lease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// TTL is the lease's TTL.
func (l *Lease) TTL() time.Duration { return l.cfg.TTL }

// Context returns a context derived from parent, cancelled with Cause when
// the lease is lost or released (at once if it already was). Its Err
// checks the deadline itself (see State).
func (l *Lease) Context(parent context.Context) context.Context {
	defer l.emit() // a loss checkDeadline found
	ctx, cancel := context.WithCancelCause(parent)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checkDeadline()
	if l.state != Held {
		cancel(l.cause)
		return ctx
	}
	if len(l.ctxs) >= l.pruneAt { // drop contexts that ended on their own
		live := l.ctxs[:0]
		for _, d := range l.ctxs {
			if d.ctx.Err() == nil {
				live = append(live, d)
			}
		}
		clear(l.ctxs[len(live):])
		l.ctxs = live
		l.pruneAt = max(8, 2*len(live))
	}
	l.ctxs = append(l.ctxs, derived{ctx, cancel})
	return &leaseCtx{Context: ctx, l: l}
}

// leaseCtx is a context from Context. Its Err checks the lease's deadline,
// so that a holder asking past the deadline sees it cancelled even before
// the expiry timer ran (one busy CPU, a process just resumed). Contexts
// derived from it attach to the embedded cancelCtx directly (Value
// delegates), without a goroutine.
type leaseCtx struct {
	context.Context // from context.WithCancelCause
	l               *Lease
}

// Err is the embedded context's error, after reporting the lease lost if
// its deadline has passed.
func (c *leaseCtx) Err() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	c.l.mu.Lock()
	c.l.checkDeadline()
	c.l.mu.Unlock()
	return c.Context.Err()
}

// finish records the final cause, cancels derived contexts (before Done,
// so that whoever sees Done closed sees them cancelled) and closes Done.
// l.mu is held.
func (l *Lease) finish(st State, cause error) {
	l.state, l.cause = st, cause
	if st == Lost {
		l.note(LostEvent, cause)
	} else {
		l.note(ReleasedEvent, nil)
	}
	l.renewT.Stop()
	l.expiryT.Stop()
	if l.cancelRenew != nil {
		l.cancelRenew()
	}
	for _, d := range l.ctxs {
		d.cancel(cause)
	}
	l.ctxs = nil
	close(l.done)
}

func (l *Lease) lose(cause error) { l.finish(Lost, cause) }

func (l *Lease) expiredCause() error {
	if l.renewing {
		err := driver.Indeterminate(fmt.Errorf("a renewal sent %v earlier got no reply", time.Since(l.renewSent).Round(time.Millisecond)))
		if l.lastErr != nil {
			err = fmt.Errorf("%w (the one before failed: %w)", err, l.lastErr)
		}
		return fmt.Errorf("%s: %w: no renewal was confirmed before the lease's expiry: %w",
			l.cfg.Name, distkit.ErrLeaseLost, err)
	}
	if l.lastErr != nil {
		return fmt.Errorf("%s: %w: no renewal was confirmed before the lease's expiry; last error: %w",
			l.cfg.Name, distkit.ErrLeaseLost, l.lastErr)
	}
	return fmt.Errorf("%s: %w: no renewal was confirmed before the lease's expiry (the process was paused or its renewals ran late)",
		l.cfg.Name, distkit.ErrLeaseLost)
}

// renew runs from renewT: one renewal, then the next timer.
func (l *Lease) renew() {
	defer l.emit() // after the deferred unlock below
	l.mu.Lock()
	if l.state != Held || l.halted || l.renewing {
		l.mu.Unlock()
		return
	}
	now := time.Now()
	if !now.Before(l.deadline) {
		l.lose(l.expiredCause())
		l.mu.Unlock()
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), minTime(l.deadline, now.Add(l.every)))
	sent := time.Now()
	l.renewing, l.renewSent, l.cancelRenew = true, sent, cancel
	l.mu.Unlock()

	ok, err := l.cfg.Ops.Renew(ctx)
	cancel()

	l.mu.Lock()
	defer l.mu.Unlock()
	l.renewing, l.cancelRenew = false, nil
	if l.state != Held || l.halted {
		return
	}
	switch {
	case err == nil && ok:
		d := sent.Add(l.cfg.TTL - Margin(l.cfg.TTL))
		if !time.Now().Before(d) { // confirmed, but too late to count on
			l.lose(l.expiredCause())
			return
		}
		if l.lastErr != nil {
			l.note(RenewRecovered, nil)
		}
		l.deadline, l.lastErr = d, nil
		l.expiryT.Reset(time.Until(d))
		l.renewT.Reset(time.Until(sent.Add(l.every))) // TTL/3 into the new validity
	case err == nil:
		l.lose(fmt.Errorf("%s: %w: a renewal was refused: the lease expired or someone else holds it",
			l.cfg.Name, distkit.ErrLeaseLost))
	default:
		l.lastErr = err
		l.note(RenewFailed, err)
		if !Permanent(err) {
			l.renewT.Reset(min(l.retry, time.Until(l.deadline)))
		} // a permanent error is not retried: the deadline reports it
	}
}

// expire runs from expiryT.
func (l *Lease) expire() {
	defer l.emit()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != Held {
		return
	}
	if d := time.Until(l.deadline); d > 0 { // extended after the timer fired
		l.expiryT.Reset(d)
		return
	}
	l.lose(l.expiredCause())
}

// Release stops renewals and removes the lease. It returns the final
// state: Released with a nil error; Lost with an error matching
// distkit.ErrNotHeld (and distkit.ErrLeaseLost) when the lease had been
// lost or was found gone or someone else's (a lost lease that survives on
// the server is removed all the same, owner-checked); or the current state
// with the backend's error, in which case Release may be called again
// (meanwhile the lease is no longer renewed and is lost at its deadline).
// Releasing twice returns Released, nil. A Release waiting for another one
// to finish returns the current state and ctx's error if ctx ends first.
func (l *Lease) Release(ctx context.Context) (State, error) {
	defer l.emit()
	select {
	case l.relSem <- struct{}{}:
	case <-ctx.Done():
		return l.State(), fmt.Errorf("%s: release: %w", l.cfg.Name, ctx.Err())
	}
	defer func() { <-l.relSem }()
	l.mu.Lock()
	l.checkDeadline()
	if l.state == Released {
		l.mu.Unlock()
		return Released, nil
	}
	l.halted = true
	l.renewT.Stop()
	if l.cancelRenew != nil { // its outcome no longer matters
		l.cancelRenew()
	}
	l.mu.Unlock()

	ok, err := l.cfg.Ops.Release(ctx)

	l.mu.Lock()
	defer l.mu.Unlock()
	l.checkDeadline() // as if the expiry timer had run on time
	switch {
	case l.state == Lost:
		return Lost, fmt.Errorf("%s: release: %w: %w", l.cfg.Name, distkit.ErrNotHeld, l.cause)
	case err != nil:
		return l.state, fmt.Errorf("%s: release: %w", l.cfg.Name, err)
	case !ok:
		l.lose(fmt.Errorf("%s: %w: the lease expired or someone else holds it", l.cfg.Name, distkit.ErrLeaseLost))
		return Lost, fmt.Errorf("%s: release: %w: %w", l.cfg.Name, distkit.ErrNotHeld, l.cause)
	}
	l.finish(Released, errReleased)
	return Released, nil
}

// Abandon reports a held lease lost at once (its owner was collected
// without Release) and releases it in the background, bounded by
// min(TTL, MaxReleaseWait). Call it from a runtime.AddCleanup function of
// the user's handle. It does nothing on a lease already lost or released.
func (l *Lease) Abandon() {
	defer l.emit()
	l.mu.Lock()
	if l.state != Held {
		l.mu.Unlock()
		return
	}
	l.halted = true
	l.lose(fmt.Errorf("%s: %w: its guard was garbage-collected without Release", l.cfg.Name, distkit.ErrLeaseLost))
	l.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), min(l.cfg.TTL, MaxReleaseWait))
		defer cancel()
		l.cfg.Ops.Release(ctx) // best effort: otherwise it expires by TTL
	}()
}

// Permanent reports whether err will not go away by retrying: the backend
// or client was closed, an option is invalid, a script failed at run time,
// the server refused the command for good (NOPERM, NOAUTH, WRONGPASS,
// CROSSSLOT), or a driver returned an error it did not classify. Errors
// that say the command did not run or may have run (ErrNotApplied,
// ErrIndeterminate: timeouts, resets, outages, MOVED, READONLY, LOADING,
// CLUSTERDOWN during a failover) are transient, and so are context errors.
func Permanent(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, backend.ErrClosed), errors.Is(err, backend.ErrInvalidOption):
		return true
	}
	var se *backend.ScriptError
	if errors.As(err, &se) {
		switch se.Code() {
		case "NOPERM", "NOAUTH", "WRONGPASS", "CROSSSLOT":
			return true
		}
	}
	return !errors.Is(err, backend.ErrNotApplied) && !errors.Is(err, backend.ErrIndeterminate) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
