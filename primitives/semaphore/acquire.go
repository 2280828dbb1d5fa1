package semaphore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/bounded"
	"github.com/distkit-go/distkit/internal/lease"
	"github.com/distkit-go/distkit/internal/lockscript"
	"github.com/distkit-go/distkit/internal/semscript"
	"github.com/distkit-go/distkit/internal/waitsub"
)

// Acquire waits until n units are acquired or ctx is done; then it returns
// an error matching ctx's error (and the last attempt's error, if it
// failed). n must be between 1 and the capacity (distkit.ErrInvalidOption
// otherwise, at once). Transient backend errors while waiting are
// retried; a permanent one ends the wait.
func (s *Semaphore) Acquire(ctx context.Context, n int64) (*Permit, error) {
	return s.acquire(ctx, n, policy{})
}

// TryAcquire makes one attempt: distkit.ErrNotAcquired when n units are
// not free or someone is queued, the backend's error when the attempt
// failed.
func (s *Semaphore) TryAcquire(ctx context.Context, n int64) (*Permit, error) {
	return s.acquire(ctx, n, policy{once: true})
}

// TryAcquireWithTimeout waits at most d: distkit.ErrTimeout when d
// expires, wrapping the last attempt's error if that attempt failed. A ctx
// that ends first ends the wait with its error.
func (s *Semaphore) TryAcquireWithTimeout(ctx context.Context, n int64, d time.Duration) (*Permit, error) {
	if d <= 0 {
		return nil, fmt.Errorf("%s: %w: timeout %v is not positive", s.errName, distkit.ErrInvalidOption, d)
	}
	return s.acquire(ctx, n, policy{timeout: d})
}

type policy struct {
	once    bool
	timeout time.Duration
}

var errWaitTimeout = errors.New("semaphore: wait timed out")

// cleanupGrace: see lock's.
const cleanupGrace = 50 * time.Millisecond

func (s *Semaphore) checkN(n int64) error {
	if n < 1 {
		return fmt.Errorf("%s: %w: n %d is below 1", s.errName, distkit.ErrInvalidOption, n)
	}
	if c := s.capacity.Load(); n > c {
		return fmt.Errorf("%s: %w: n %d exceeds the capacity %d: it could never be acquired", s.errName, distkit.ErrInvalidOption, n, c)
	}
	return nil
}

func (s *Semaphore) acquire(ctx context.Context, n int64, p policy) (*Permit, error) {
	if err := s.checkN(n); err != nil {
		return nil, err
	}
	id := newAcquisitionID(s.owner)
	wctx := ctx
	if p.timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeoutCause(ctx, p.timeout, errWaitTimeout)
		defer cancel()
	}
	// A waiter's mark must outlive the gap between two of its attempts
	// reaching the server: RetryInterval plus a round trip. It lasts
	// markBase plus twice the last round trip seen (this wait's, else the
	// Semaphore's last); "0": a single attempt never waits, so it does not
	// queue.
	rtt := time.Duration(s.rtt.Load())
	mark, markLife := "0", time.Duration(0)
	var sub *waitsub.Sub
	defer sub.Close()
	var timer *time.Timer
	uncertain := false // an attempt may have acquired without our knowing
	queued := false    // an attempt may have queued us
	answered := false  // the last attempt got an answer
	var lastErr error
	// Every wait but Acquire with a ctx that can never end has a budget,
	// and its attempts may not overrun it whatever the driver does
	// (rueidis does not honour a cancellation while it dials).
	detach := p.once || wctx.Done() != nil
	for attempt := 0; ; attempt++ {
		if wctx.Err() != nil {
			return nil, s.ended(ctx, id, uncertain, queued, answered, p, lastErr)
		}
		if err := s.checkN(n); err != nil { // SetCapacity may have lowered it
			return nil, s.giveUp(id, uncertain, queued, answered, err)
		}
		if !p.once {
			// At most the TTL: a dead waiter holds its place no longer than
			// a dead holder its units.
			markLife = min(s.markBase+2*rtt, max(s.markBase, s.ttl))
			mark = driver.Millis(markLife)
		}
		sent := time.Now()
		token, abandoned, err := s.try(wctx, id, n, mark, uncertain, detach)
		took := time.Since(sent)
		if err == nil {
			rtt = took
			s.rtt.Store(int64(took))
		}
		if abandoned { // it cleans up after itself; go on under a new id
			id, uncertain, queued = newAcquisitionID(s.owner), false, false
		}
		switch {
		case err == nil && token > 0 && !lease.Valid(sent, s.ttl):
			// Confirmed too late to count on: hand it back (its place in
			// line went with the grant) and go on under a new id.
			s.undo(id, true, false)
			id, uncertain, queued = newAcquisitionID(s.owner), false, false
			answered, lastErr = true, nil
		case err == nil && token > 0:
			return s.newPermit(id, n, token, attempt, sent), nil
		case err == nil:
			answered, lastErr = true, nil
			queued = queued || mark != "0"
			if !p.once && (sub == nil || sub.Retryable()) {
				sub.Close()
				sub = waitsub.Start(wctx, s.notifier, s.keys.Channel)
			}
		case wctx.Err() != nil: // cut short by the end of the wait
			uncertain = uncertain || !abandoned && !errors.Is(err, backend.ErrNotApplied)
			queued = queued || mark != "0" && !abandoned && !errors.Is(err, backend.ErrNotApplied)
			if !answered || lastErr != nil {
				lastErr = err
			}
			return nil, s.ended(ctx, id, uncertain, queued, false, p, lastErr)
		case lease.Permanent(err):
			uncertain = uncertain || !abandoned && errors.Is(err, backend.ErrIndeterminate)
			return nil, s.giveUp(id, uncertain, queued, false, fmt.Errorf("%s: %w", s.errName, err))
		default:
			uncertain = uncertain || !abandoned && errors.Is(err, backend.ErrIndeterminate)
			queued = queued || mark != "0" && !abandoned && errors.Is(err, backend.ErrIndeterminate)
			answered, lastErr = false, err
		}
		if !p.once && err == nil && s.retry+2*took > markLife {
			// The mark just set may lapse before the next attempt reaches
			// the server, up to RetryInterval plus a round trip later (a
			// round trip much longer than the mark allowed for): refresh it
			// at once with one that allows for it.
			continue
		}
		if p.once {
			if lastErr != nil {
				return nil, s.giveUp(id, uncertain, queued, false, fmt.Errorf("%s: %w", s.errName, lastErr))
			}
			return nil, fmt.Errorf("%s: %w: %d units", s.errName, distkit.ErrNotAcquired, n)
		}
		if timer == nil {
			timer = time.NewTimer(s.retry)
			defer timer.Stop()
		} else {
			timer.Reset(s.retry)
		}
		select {
		case <-sub.Ready():
			sub.SawReady() // subscribed: try again at once, not to miss a release in between
		case <-sub.Notify():
		case <-timer.C:
		case <-wctx.Done():
			return nil, s.ended(ctx, id, uncertain, queued, answered && lastErr == nil, p, lastErr)
		}
	}
}

// try runs the acquiring script once, bounded by the wait and by the
// lease's validity. With detach (the wait has a budget), it runs through
// bounded.Run: an attempt the driver does not end within bounded.Grace of
// its deadline (rueidis while it dials) is abandoned, and releases the
// permit it may have taken and leaves the line when it returns; the wait
// must then go on under a new acquisition id.
func (s *Semaphore) try(ctx context.Context, id string, n int64, mark string, retry, detach bool) (token int64, abandoned bool, err error) {
	actx, cancel := context.WithTimeout(ctx, s.ttl-lease.Margin(s.ttl))
	defer cancel()
	if !detach {
		token, err = s.attempt(actx, id, n, mark, retry)
		return token, false, err
	}
	return bounded.Run(actx, func() (int64, error) { return s.attempt(actx, id, n, mark, retry) },
		func(token int64, err error) {
			acquired := token > 0 || err != nil && !errors.Is(err, backend.ErrNotApplied)
			if acquired || mark != "0" {
				s.undo(id, acquired, mark != "0")
			}
		})
}

// attempt runs the acquiring script once under ctx.
func (s *Semaphore) attempt(ctx context.Context, id string, n int64, mark string, retry bool) (int64, error) {
	r := "0"
	if retry {
		r = "1"
	}
	v, err := s.b.EvalScript(ctx, semscript.Acquire, s.acqKeys,
		id, strconv.FormatInt(n, 10), strconv.FormatInt(s.capacity.Load(), 10), s.ttlArg, mark, r, s.keys.Channel)
	if err != nil {
		return 0, err
	}
	return v.Int64()
}

// ended builds the error of a wait whose context ended.
func (s *Semaphore) ended(ctx context.Context, id string, uncertain, queued, answered bool, p policy, lastErr error) error {
	var err error
	if ctx.Err() != nil {
		err = fmt.Errorf("%s: %w", s.errName, ctx.Err())
	} else {
		err = fmt.Errorf("%s: %w after %v", s.errName, distkit.ErrTimeout, p.timeout)
	}
	if lastErr != nil {
		err = fmt.Errorf("%w (last error: %w)", err, lastErr)
	}
	return s.giveUp(id, uncertain, queued, answered, err)
}

// giveUp returns err after removing what the wait may have left behind (a
// permit taken by an attempt whose outcome was unknown, its place in
// line), waiting for that at most cleanupGrace when the backend answered.
func (s *Semaphore) giveUp(id string, uncertain, queued, answered bool, err error) error {
	if !uncertain && !queued {
		return err
	}
	done := s.undo(id, uncertain, queued)
	if !answered {
		return err
	}
	t := time.NewTimer(cleanupGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	return err
}

// undo gives acquisition id up, in the background, bounded by TTL/3: it
// releases the permit id may hold (held might be true), removes its place
// in line (queued), and leaves a tombstone for id, so that an attempt of
// id that reaches the server after it (one whose driver stopped waiting)
// neither takes units nor queues. id must not be used again.
func (s *Semaphore) undo(id string, held, queued bool) <-chan struct{} {
	done := make(chan struct{})
	if !held && !queued {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), s.ttl/3)
		defer cancel()
		// Best effort: the lease and the mark expire too.
		s.b.EvalScript(ctx, semscript.GiveUp, []string{s.keys.Holders, s.keys.Queue, s.keys.QueueExpiry, s.keys.Gone}, id, s.goneArg, s.keys.Channel)
	}()
	return done
}

// releaseWithin is Permit.Release's release: it returns within
// bounded.Grace of ctx's end even when the driver overruns ctx (rueidis
// does not honour a cancellation while it dials); the call is then left to
// finish on its own (releasing is owner-checked, so a later Release is
// safe) and its outcome is unknown: ErrIndeterminate.
func (s *Semaphore) releaseWithin(ctx context.Context, id string) (bool, error) {
	ok, _, err := bounded.Run(ctx, func() (bool, error) { return s.release(ctx, id) }, nil)
	return ok, err
}

// release removes the permit of acquisition id; false when it was not held.
func (s *Semaphore) release(ctx context.Context, id string) (bool, error) {
	v, err := s.b.EvalScript(ctx, lockscript.ReleaseShared, []string{s.keys.Holders}, id+":", s.keys.Channel)
	if err != nil {
		return false, err
	}
	r, err := v.Int64()
	return r == 1, err
}

// renew extends permit member's lease; false when it is gone.
func (s *Semaphore) renew(ctx context.Context, member string) (bool, error) {
	v, err := s.b.EvalScript(ctx, lockscript.RenewShared, []string{s.keys.Holders}, member, s.ttlArg)
	if err != nil {
		return false, err
	}
	r, err := v.Int64()
	return r == 1, err
}
