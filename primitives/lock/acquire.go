package lock

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
	"github.com/distkit-go/distkit/internal/waitsub"
)

type mode uint8

const (
	exclusive mode = iota // Mutex
	writer                // RWMutex writer: marks itself waiting
	shared                // RWMutex reader
)

// policy bounds an acquisition: attempts (0 = unbounded) and timeout
// (0 = none).
type policy struct {
	attempts int
	timeout  time.Duration
}

// errWaitTimeout is the cause of a wait context whose timeout expired.
var errWaitTimeout = errors.New("lock: wait timed out")

// try makes one acquisition attempt, bounded by ctx and by the lease's
// validity, TTL − lease.Margin (a later reply could not leave a lease to
// count on).
//
// With detach (the wait has a budget: a deadline, attempts, or a ctx
// that can be cancelled), the attempt runs through bounded.Run, and a
// driver that does not return within bounded.Grace of the attempt's
// deadline (rueidis may not while it dials a new connection) is not waited
// for: the attempt is abandoned and cleans up after itself when it returns
// (releasing id if it may have acquired, removing a writer's mark), and try
// reports ErrIndeterminate with abandoned set, after which the wait must
// use a new acquisition id. Without a budget (a ctx that can never end) the
// attempt runs on the caller's goroutine, which saves a goroutine switch.
func (c *core) try(ctx context.Context, m mode, id string, retry, detach, wait bool) (token int64, acked int, abandoned bool, err error) {
	actx, cancel := context.WithTimeout(ctx, c.ttl-lease.Margin(c.ttl))
	defer cancel()
	if !detach {
		token, acked, err = c.attempt(actx, m, id, retry, wait)
		return token, acked, false, err
	}
	type result struct {
		token int64
		acked int
	}
	r, abandoned, err := bounded.Run(actx, func() (result, error) {
		token, acked, err := c.attempt(actx, m, id, retry, wait)
		return result{token, acked}, err
	}, func(r result, err error) {
		acquired := r.token > 0 || err != nil && !errors.Is(err, backend.ErrNotApplied)
		// A waiting exclusive attempt may have queued: Release takes it
		// out of line (and passes on a lock handed to it meanwhile).
		queued := wait && m != shared && !errors.Is(err, backend.ErrNotApplied)
		if acquired || queued || m == writer {
			c.undo(m, id, acquired || queued)
		}
	})
	return r.token, r.acked, abandoned, err
}

// attempt runs the acquiring script once under ctx. token 0 means "held
// by someone"; acked is the number of replicas that acknowledged (with
// MinReplicas). wait: a refused attempt marks the lock as waited for (the
// waiters key), so that its release publishes a wake-up; a release with
// nobody waiting publishes nothing.
func (c *core) attempt(ctx context.Context, m mode, id string, retry, wait bool) (token int64, acked int, err error) {
	mark := "0"
	if wait {
		mark = c.waitTTL
	}
	s, keys, args := lockscript.Acquire, c.excKeys, []string{id, c.ttlArg, "0", mark}
	switch m {
	case shared:
		keys = c.excKeys[:5]
		r := "0"
		if retry {
			r = "1"
		}
		s, args = lockscript.AcquireShared, []string{id, c.ttlArg, r, mark}
	case writer:
		args[2] = c.waitTTL
	}
	var v backend.Value
	if c.replicas > 0 {
		v, acked, err = c.repl.EvalScriptWait(ctx, s, keys, args, c.replicas, c.waitBudget(ctx))
	} else {
		v, err = c.b.EvalScript(ctx, s, keys, args...)
	}
	if err != nil {
		return 0, 0, err
	}
	token, err = v.Int64()
	return token, acked, err
}

// waitBudget is how long WAIT may block within ctx: ReplicaTimeout, but
// leaving a quarter of what remains of ctx for the round trip.
func (c *core) waitBudget(ctx context.Context) time.Duration {
	d := c.replWait
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl)*3/4)
	}
	return max(d, time.Millisecond)
}

// acquire runs attempts until one succeeds or the policy, ctx or a
// permanent error ends the wait. Every I/O runs under the wait's own
// budget (ctx, and the timeout if any), the subscription to releases
// included, which runs beside the attempts and never delays them.
func (c *core) acquire(ctx context.Context, m mode, p policy) (g *Guard, err error) {
	if c.obs != nil {
		defer func(start time.Time) { c.obs.waited(start, m, g, err) }(time.Now())
	}
	if m == writer && p.attempts == 1 {
		m = exclusive // a single attempt never waits, so it does not hold readers back
	}
	id := newAcquisitionID(c.owner)
	wctx := ctx
	if p.timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeoutCause(ctx, p.timeout, errWaitTimeout)
		defer cancel()
	}
	// Only Lock(ctx) with a ctx that can never end (context.Background())
	// has no budget; every other wait is bounded (its timeout, ctx's
	// deadline or cancellation, or its attempts × TTL), and its attempts may
	// not overrun that whatever the driver does (rueidis does not honour a
	// cancellation while it dials).
	_, hasDeadline := wctx.Deadline()
	detach := hasDeadline || p.attempts > 0 || wctx.Done() != nil
	var sub *waitsub.Sub // started once the lock was seen held
	defer func() {
		if sub != nil {
			sub.Close()
		}
	}()
	var timer *time.Timer
	uncertain := false // an attempt may have acquired without our knowing
	queued := false    // an exclusive attempt may have queued id (see giveUp)
	ahead := 0         // waiters ahead of id in the queue, as of the last refusal
	var lastErr error  // of the last attempt, nil when it got an answer
	answered := false  // an attempt of this wait got an answer
	for n := 0; ; n++ {
		if wctx.Err() != nil {
			return nil, c.ended(ctx, m, id, uncertain || queued, answered && lastErr == nil, p, lastErr)
		}
		sent := time.Now()
		wait := p.attempts != 1
		token, acked, abandoned, err := c.try(wctx, m, id, uncertain, detach, wait)
		if abandoned { // it cleans up after itself; go on under a new id
			id, uncertain, queued = newAcquisitionID(c.owner), false, false
		} else if wait && m != shared && !errors.Is(err, backend.ErrNotApplied) {
			queued = true
		}
		switch {
		case err == nil && token > 0 && c.replicas > 0 && acked < c.replicas:
			return nil, c.giveUp(m, id, true, true, fmt.Errorf("%s: %w", c.errName, &distkit.ReplicationError{Wanted: c.replicas, Acked: acked}))
		case err == nil && token > 0 && !lease.Valid(sent, c.ttl):
			// Confirmed too late to count on (a reply slower than TTL):
			// hand it back and go on as if the lock were held.
			c.undo(m, id, true)
			id = newAcquisitionID(c.owner)
			uncertain, queued, lastErr = false, false, nil
		case err == nil && token > 0:
			return c.newGuard(m, id, token, n, sent), nil
		case err == nil:
			lastErr, answered = nil, true
			ahead = max(int(-token)-1, 0)
			if p.attempts != 1 && c.notifier != nil && (sub == nil || sub.Retryable()) {
				sub.Close() // nil-safe
				sub = waitsub.Start(wctx, c.notifier, c.channel)
			}
		case wctx.Err() != nil: // cut short by the end of the wait
			uncertain = uncertain || !abandoned && !errors.Is(err, backend.ErrNotApplied)
			if !answered || lastErr != nil {
				// Nothing tells the lock was held: report what did happen.
				// (After an answer, an attempt the wait's own end cut short
				// says nothing about the backend; the answer stands.)
				lastErr = err
			}
			return nil, c.ended(ctx, m, id, uncertain || queued, false, p, lastErr)
		case lease.Permanent(err):
			uncertain = uncertain || !abandoned && errors.Is(err, backend.ErrIndeterminate)
			return nil, c.giveUp(m, id, uncertain || queued, !errors.Is(err, backend.ErrNotApplied) && !errors.Is(err, backend.ErrIndeterminate), fmt.Errorf("%s: %w", c.errName, err))
		default:
			uncertain = uncertain || !abandoned && errors.Is(err, backend.ErrIndeterminate)
			lastErr = err
		}
		if p.attempts > 0 && n+1 >= p.attempts {
			if p.attempts == 1 {
				if lastErr != nil {
					return nil, c.giveUp(m, id, uncertain, false, fmt.Errorf("%s: %w", c.errName, lastErr))
				}
				return nil, fmt.Errorf("%s: %w", c.errName, distkit.ErrNotAcquired)
			}
			return nil, c.giveUp(m, id, uncertain || queued, lastErr == nil, fmt.Errorf("%s: %w", c.errName, &distkit.RetriesError{Attempts: n + 1, Last: lastErr}))
		}
		if timer == nil {
			timer = time.NewTimer(c.retry)
			defer timer.Stop()
		} else {
			timer.Reset(c.retry) // no stale tick survives Reset (Go 1.23 timers)
		}
	wake:
		for {
			select {
			case <-sub.Ready():
				// Subscribed: try again at once, so that a release between the
				// last attempt and the subscription is not missed (and the
				// count of waiters ahead, which messages before it missed,
				// is refreshed).
				sub.SawReady()
			case <-sub.Notify():
				if ahead > 0 {
					// A queued waiter with others ahead: this release went
					// to one of them (the lock is handed to the head), so
					// it moves up without trying; the polling below still
					// refreshes its place and corrects a count a lost or
					// coalesced message left too high.
					ahead--
					continue wake
				}
			case <-timer.C:
			case <-wctx.Done():
				return nil, c.ended(ctx, m, id, uncertain || queued, answered && lastErr == nil, p, lastErr)
			}
			break
		}
	}
}

// ended builds the error of a wait whose context ended: ctx's error when
// the caller's context ended, else ErrTimeout; either wraps the last
// attempt's error, if the last attempt failed. answered: the backend
// answered the last attempt.
func (c *core) ended(ctx context.Context, m mode, id string, uncertain, answered bool, p policy, lastErr error) error {
	var err error
	if ctx.Err() != nil {
		err = fmt.Errorf("%s: %w", c.errName, ctx.Err())
	} else {
		err = fmt.Errorf("%s: %w after %v", c.errName, distkit.ErrTimeout, p.timeout)
	}
	if lastErr != nil {
		err = fmt.Errorf("%w (last error: %w)", err, lastErr)
	}
	return c.giveUp(m, id, uncertain, answered, err)
}

// cleanupGrace is how long a wait that ends without the lock waits for its
// clean-up: a healthy backend finishes it in a round trip, so the caller
// sees its effect (a reader held back by a writer's mark gets in at once);
// an unreachable one does not hold the caller past its budget for it.
const cleanupGrace = 50 * time.Millisecond

// giveUp returns err after cleaning up what the wait may have left behind:
// a lease taken by an attempt whose outcome was unknown, a writer's waiting
// mark (whose removal wakes the readers it held back). When the backend
// answered the last attempt (answered), it waits for the clean-up at most
// cleanupGrace; the rest runs in the background, bounded by TTL/3.
//
// A wait whose exclusive attempts may have queued it passes uncertain: the
// release then takes it out of line and passes on a lock handed to it
// meanwhile (otherwise that lock would wait for the mark to expire).
func (c *core) giveUp(m mode, id string, uncertain, answered bool, err error) error {
	if !uncertain && m != writer {
		return err
	}
	done := c.undo(m, id, uncertain)
	if !answered {
		return err // the backend did not answer the last attempt: no point waiting
	}
	t := time.NewTimer(cleanupGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	return err
}

// undo releases acquisition id (when held might be true) and removes a
// writer's waiting mark, in the background; the channel is closed when it
// is done.
func (c *core) undo(m mode, id string, held bool) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), c.ttl/3)
		defer cancel()
		if held {
			c.release(ctx, m, id) // best effort: the lease expires by TTL otherwise
		}
		if m == writer {
			c.b.EvalScript(ctx, lockscript.Unmark, []string{c.wwait, c.waiters}, id, c.channel) // best effort: it expires too
		}
	}()
	return done
}

// release removes the lease of acquisition id; false when it was not held.
func (c *core) release(ctx context.Context, m mode, id string) (bool, error) {
	s, key := lockscript.Release, c.lockKey
	if m == shared {
		s, key = lockscript.ReleaseShared, c.readers
	}
	keys := []string{key, c.waiters}
	if m != shared {
		keys = []string{key, c.waiters, c.queue, c.qexp, c.fence}
	}
	v, err := c.b.EvalScript(ctx, s, keys, id+":", c.channel)
	if err != nil {
		return false, err
	}
	n, err := v.Int64()
	return n == 1, err
}

// releaseWithin is Guard.Release's release: it returns within
// bounded.Grace of ctx's end even when the driver overruns ctx (rueidis
// does not honour a cancellation while it dials). The call is then left to
// finish on its own (releasing is owner-checked, so a later Release is
// safe) and its outcome is unknown: ErrIndeterminate.
func (c *core) releaseWithin(ctx context.Context, m mode, id string) (bool, error) {
	ok, _, err := bounded.Run(ctx, func() (bool, error) { return c.release(ctx, m, id) }, nil)
	return ok, err
}

// renew extends the lease of a held value; false when it is gone. With
// MinReplicas a renewal counts only once the replicas acknowledged it; one
// they did not is an unconfirmed renewal (retried until the deadline).
func (c *core) renew(ctx context.Context, m mode, value string) (bool, error) {
	s, keys := driver.RenewLeaseScript, []string{c.lockKey}
	if m == shared {
		s, keys = lockscript.RenewShared, []string{c.readers}
	}
	var v backend.Value
	var err error
	if c.replicas > 0 {
		var acked int
		v, acked, err = c.repl.EvalScriptWait(ctx, s, keys, []string{value, c.ttlArg}, c.replicas, c.waitBudget(ctx))
		if err == nil && acked < c.replicas {
			if n, _ := v.Int64(); n == 1 {
				return false, driver.Indeterminate(fmt.Errorf("%s: renewal: %w", c.errName, &distkit.ReplicationError{Wanted: c.replicas, Acked: acked}))
			}
		}
	} else if m == shared {
		v, err = c.b.EvalScript(ctx, s, keys, value, c.ttlArg)
	} else {
		return c.b.RenewLease(ctx, c.lockKey, value, c.ttl)
	}
	if err != nil {
		return false, err
	}
	n, err := v.Int64()
	return n == 1, err
}

func retriesPolicy(n int) (policy, error) {
	if n < 0 {
		return policy{}, fmt.Errorf("lock: %w: retries %d is negative", distkit.ErrInvalidOption, n)
	}
	return policy{attempts: n + 1}, nil
}

func timeoutPolicy(d time.Duration) (policy, error) {
	if d <= 0 {
		return policy{}, fmt.Errorf("lock: %w: timeout %v is not positive", distkit.ErrInvalidOption, d)
	}
	return policy{timeout: d}, nil
}

func tokenString(t int64) string { return strconv.FormatInt(t, 10) }
