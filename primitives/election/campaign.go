package election

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/bounded"
	"github.com/distkit-go/distkit/internal/electscript"
	"github.com/distkit-go/distkit/internal/lease"
	"github.com/distkit-go/distkit/internal/waitsub"
)

// cleanupGrace: see lock's.
const cleanupGrace = 50 * time.Millisecond

// Campaign waits until this candidate is elected with value, or ctx is
// done; then it returns an error matching ctx's error (and the last
// attempt's error, if it failed). Transient backend errors are retried; a
// permanent one (distkit.ErrClosed, a script error) ends the wait. A
// campaign that ends without being elected leaves nothing behind: a term an
// attempt may have won without its reply arriving is resigned.
func (e *Election) Campaign(ctx context.Context, value string) (*Leadership, error) {
	id := newTermID(e.owner)
	var sub *waitsub.Sub
	defer func() { sub.Close() }()
	var timer *time.Timer
	uncertain := false // an attempt may have won without our knowing
	var lastErr error
	answered := false
	// A ctx that can end bounds every attempt whatever the driver does
	// (rueidis does not honour a cancellation while it dials).
	detach := ctx.Done() != nil
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return nil, e.ended(ctx, id, uncertain, answered && lastErr == nil, lastErr)
		}
		sent := time.Now()
		token, abandoned, err := e.try(ctx, id, value, detach)
		if abandoned { // it cleans up after itself; go on under a new id
			id, uncertain = newTermID(e.owner), false
		}
		switch {
		case err == nil && token > 0 && !lease.Valid(sent, e.ttl):
			e.undo(id) // confirmed too late to count on: hand it back
			id, uncertain, answered, lastErr = newTermID(e.owner), false, true, nil
		case err == nil && token > 0:
			return e.newLeadership(id, value, token, sent), nil
		case err == nil:
			answered, lastErr = true, nil
			if sub == nil || sub.Retryable() && e.notifier != nil {
				sub.Close()
				sub = waitsub.Start(ctx, e.notifier, e.keys.Channel)
			}
		case ctx.Err() != nil:
			uncertain = uncertain || !abandoned && !errors.Is(err, backend.ErrNotApplied)
			if !answered || lastErr != nil {
				lastErr = err
			}
			return nil, e.ended(ctx, id, uncertain, false, lastErr)
		case lease.Permanent(err):
			uncertain = uncertain || !abandoned && errors.Is(err, backend.ErrIndeterminate)
			err = fmt.Errorf("%s: %w", e.errName, err)
			if uncertain {
				e.undo(id)
			}
			return nil, err
		default:
			uncertain = uncertain || !abandoned && errors.Is(err, backend.ErrIndeterminate)
			answered, lastErr = false, err
		}
		if timer == nil {
			timer = time.NewTimer(e.retry)
			defer timer.Stop()
		} else {
			timer.Reset(e.retry)
		}
		select {
		case <-sub.Ready():
			sub.SawReady() // subscribed: try again at once, not to miss a resignation in between
		case <-sub.Notify():
		case <-timer.C:
		case <-ctx.Done():
			return nil, e.ended(ctx, id, uncertain, answered && lastErr == nil, lastErr)
		}
	}
}

// try runs the campaign script once, bounded by ctx and the lease's
// validity. The script recognises id's own term, so a retry after an
// unknown outcome finds the term an earlier attempt may have won. With
// detach (ctx can end), it runs through bounded.Run: an attempt the driver
// does not end within bounded.Grace of its deadline (rueidis while it
// dials) is abandoned and resigns the term it may have won when it
// returns; the campaign must then go on under a new term id.
func (e *Election) try(ctx context.Context, id, value string, detach bool) (token int64, abandoned bool, err error) {
	actx, cancel := context.WithTimeout(ctx, e.ttl-lease.Margin(e.ttl))
	defer cancel()
	if !detach {
		token, err = e.attempt(actx, id, value)
		return token, false, err
	}
	return bounded.Run(actx, func() (int64, error) { return e.attempt(actx, id, value) },
		func(token int64, err error) {
			if token > 0 || err != nil && !errors.Is(err, backend.ErrNotApplied) {
				e.undo(id)
			}
		})
}

// attempt runs the campaign script once under ctx.
func (e *Election) attempt(ctx context.Context, id, value string) (int64, error) {
	v, err := e.b.EvalScript(ctx, electscript.Campaign, []string{e.keys.Leader, e.keys.Fence}, id, e.ttlArg, value, e.keys.Channel)
	if err != nil {
		return 0, err
	}
	return v.Int64()
}

// ended builds the error of a campaign whose ctx ended and resigns a term
// an attempt may have won (waiting for that at most cleanupGrace when the
// backend answered).
func (e *Election) ended(ctx context.Context, id string, uncertain, answered bool, lastErr error) error {
	err := fmt.Errorf("%s: %w", e.errName, ctx.Err())
	if lastErr != nil {
		err = fmt.Errorf("%w (last error: %w)", err, lastErr)
	}
	if !uncertain {
		return err
	}
	done := e.undo(id)
	if answered {
		t := time.NewTimer(cleanupGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
		}
	}
	return err
}

// undo resigns term id in the background, bounded by TTL/3.
func (e *Election) undo(id string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), e.ttl/3)
		defer cancel()
		e.resign(ctx, id) // best effort: the term expires by TTL otherwise
	}()
	return done
}

// resignWithin is Leadership.Resign's resignation: it returns within
// bounded.Grace of ctx's end even when the driver overruns ctx (rueidis
// does not honour a cancellation while it dials); the call is then left to
// finish on its own (resigning is owner-checked, so a later Resign is safe)
// and its outcome is unknown: ErrIndeterminate.
func (e *Election) resignWithin(ctx context.Context, id string) (bool, error) {
	ok, _, err := bounded.Run(ctx, func() (bool, error) { return e.resign(ctx, id) }, nil)
	return ok, err
}

func (e *Election) resign(ctx context.Context, id string) (bool, error) {
	v, err := e.b.EvalScript(ctx, electscript.Resign, []string{e.keys.Leader}, id, e.keys.Channel)
	if err != nil {
		return false, err
	}
	n, err := v.Int64()
	return n == 1, err
}

func (e *Election) renew(ctx context.Context, id string) (bool, error) {
	v, err := e.b.EvalScript(ctx, electscript.Renew, []string{e.keys.Leader}, id, e.ttlArg)
	if err != nil {
		return false, err
	}
	n, err := v.Int64()
	return n == 1, err
}

// State is a leadership's view of its term.
type State int32

// Leadership states (numbered as lock.State).
const (
	// Leading: the term's lease is held (as of the last confirmed renewal).
	Leading State = iota
	// Lost: a renewal was refused, the lease's last confirmed expiry passed
	// without a confirmed renewal, or the Leadership was collected without
	// Resign. Final.
	Lost
	// Resigned: Resign succeeded (or the Leadership is nil).
	Resigned
)

// String returns "Leading", "Lost" or "Resigned".
func (s State) String() string {
	switch s {
	case Leading:
		return "Leading"
	case Lost:
		return "Lost"
	case Resigned:
		return "Resigned"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Leadership is one term won by Campaign. It renews its lease every TTL/3
// (from a timer: at most one goroutine, only while a renewal runs) until
// Resign, and reports the term Lost exactly as a lock.Guard reports its
// lease lost. Keep it reachable while you lead: a Leadership that becomes
// unreachable without Resign is reported Lost at once and resigned.
//
// A nil *Leadership leads nothing: Resign and Proclaim return errors
// matching distkit.ErrNotHeld, Done is closed, Context is cancelled.
type Leadership struct {
	e     *Election
	id    string
	l     *lease.Lease
	token int64

	mu    sync.Mutex
	value string
}

func (e *Election) newLeadership(id, value string, token int64, sent time.Time) *Leadership {
	l := lease.New(lease.Config{Name: e.errName, TTL: e.ttl, Ops: lease.Ops{
		Renew:   func(ctx context.Context) (bool, error) { return e.renew(ctx, id) },
		Release: func(ctx context.Context) (bool, error) { return e.resignWithin(ctx, id) },
	}, OnEvent: e.obs.OnEvent(sent)}, sent)
	ld := &Leadership{e: e, id: id, l: l, token: token, value: value}
	runtime.AddCleanup(ld, (*lease.Lease).Abandon, l)
	return ld
}

var nilDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func errNilLeadership() error {
	return fmt.Errorf("election: nil Leadership: %w", distkit.ErrNotHeld)
}

// Token is the term's fencing token: strictly greater than every earlier
// term's of this election. 0 for a nil Leadership.
func (ld *Leadership) Token() int64 {
	if ld == nil {
		return 0
	}
	return ld.token
}

// Value is the value this leader campaigned with or last proclaimed; no
// I/O.
func (ld *Leadership) Value() string {
	if ld == nil {
		return ""
	}
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.value
}

// State reports the term as of the last confirmed renewal or resignation;
// no I/O.
func (ld *Leadership) State() State {
	if ld == nil {
		return Resigned
	}
	return State(ld.l.State())
}

// Done is closed when the term is lost or resigned.
func (ld *Leadership) Done() <-chan struct{} {
	if ld == nil {
		return nilDone
	}
	return ld.l.Done()
}

// Context returns a context derived from ctx that is cancelled when the
// term is lost (cause matching distkit.ErrLeaseLost) or resigned (cause
// matching context.Canceled).
func (ld *Leadership) Context(ctx context.Context) context.Context {
	if ld == nil {
		c, cancel := context.WithCancelCause(ctx)
		cancel(errNilLeadership())
		return c
	}
	c := ld.l.Context(ctx)
	runtime.KeepAlive(ld)
	return c
}

// Resign ends the term at once, so that a waiting candidate is elected
// without waiting for the lease to expire. nil when the term was resigned
// (also when it had been before); an error matching distkit.ErrNotHeld when
// it had been lost; the backend's error otherwise (Resign may be called
// again; meanwhile the term is no longer renewed). Resign returns soon
// after ctx ends even when the backend's driver does not honour ctx
// (rueidis while it dials): the outcome is then unknown
// (distkit.ErrIndeterminate) and Resign may be called again.
func (ld *Leadership) Resign(ctx context.Context) error {
	if ld == nil {
		return errNilLeadership()
	}
	_, err := ld.l.Release(ctx)
	runtime.KeepAlive(ld)
	return err
}

// Proclaim changes the leader's value without a new election (observers
// see it). It fails with an error matching distkit.ErrNotHeld when this
// term has ended (lost or resigned, as known locally or found by the
// backend), and with the backend's error when the backend did not answer
// (the value may then have been set: ErrIndeterminate), also when ctx
// ended while the driver did not honour it (rueidis while it dials).
func (ld *Leadership) Proclaim(ctx context.Context, value string) error {
	if ld == nil {
		return errNilLeadership()
	}
	defer runtime.KeepAlive(ld)
	if st := ld.State(); st != Leading {
		return fmt.Errorf("%s: proclaim: %w: the term is %v", ld.e.errName, distkit.ErrNotHeld, st)
	}
	v, _, err := bounded.Run(ctx, func() (backend.Value, error) {
		return ld.e.b.EvalScript(ctx, electscript.Proclaim, []string{ld.e.keys.Leader}, ld.id, value, ld.e.keys.Channel)
	}, nil)
	if err != nil {
		return fmt.Errorf("%s: proclaim: %w", ld.e.errName, err)
	}
	if n, err := v.Int64(); err != nil || n != 1 {
		return fmt.Errorf("%s: proclaim: %w: the term has ended", ld.e.errName, distkit.ErrNotHeld)
	}
	ld.mu.Lock()
	ld.value = value
	ld.mu.Unlock()
	return nil
}
