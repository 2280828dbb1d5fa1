package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/distkit-go/distkit"
)

// Wait blocks until n units for key are admitted under limit, or ctx
// ends. It is the blocking form of Inc, as x/time/rate's Wait: each
// rejection says how long until the request fits (Decision.RetryAfter);
// Wait sleeps that long and asks again (another caller may have taken the
// room meanwhile: waiters are not queued in order). It returns the
// admitting decision and a nil error, or an error:
//
//   - at once, wrapping distkit.ErrTimeout, when ctx's deadline comes
//     before the request could fit (RetryAfter is beyond it), with the
//     rejecting decision, so that a caller never waits for nothing;
//   - at once, wrapping distkit.ErrInvalidOption, when n exceeds
//     limit.N: such a request never fits;
//   - ctx's error when ctx has ended, before the wait or while waiting,
//     with the latest rejection (nothing is admitted once ctx has ended);
//   - Inc's errors (invalid input, a closed provider).
//
// A degraded admission (FailOpen, FailLocal) ends the wait like any
// other: check Decision.Degraded. While the backend fails under
// FailClosed, rejections carry no RetryAfter and Wait polls with backoff
// (10 ms doubling to 1 s) until it is admitted or ctx ends.
//
// Suppressed has no Wait: each of its offers counts toward the observed
// rate, so retrying a suppressed request raises the suppression it meets.
func (a *Absolute) Wait(ctx context.Context, key string, limit Limit, n int64) (Decision, error) {
	var backoff time.Duration
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	var last Decision // the latest rejection, returned when ctx ends
	for {
		// Local (and Hybrid on a fresh view) decide without looking at ctx:
		// a wait whose ctx has ended (before it began, or as its timer
		// fired) must not take a unit.
		if ctx.Err() != nil {
			return last, callerDone(ctx, key, nil)
		}
		d, err := a.Inc(ctx, key, limit, n)
		if err != nil && ctx.Err() != nil && last.Limit > 0 {
			return last, err
		}
		if err != nil || d.Allowed {
			return d, err
		}
		last = d
		if n > d.Limit {
			return d, fmt.Errorf("ratelimit: Wait(key %q, n=%d): n exceeds the limit %d and can never be admitted: %w",
				key, n, d.Limit, distkit.ErrInvalidOption)
		}
		delay := d.RetryAfter
		if delay > 0 {
			backoff = 0
			if dl, ok := ctx.Deadline(); ok {
				if left := time.Until(dl); left < delay {
					return d, fmt.Errorf("ratelimit: Wait(key %q, n=%d) would exceed the context deadline: it fits in %v, the deadline is in %v: %w",
						key, n, delay, left.Round(time.Millisecond), distkit.ErrTimeout)
				}
			}
		} else { // unknown (degraded, or a lower bound that ran out): poll
			backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
			delay = backoff
		}
		if timer == nil {
			timer = time.NewTimer(delay)
		} else {
			timer.Reset(delay)
		}
		select {
		case <-ctx.Done():
			return d, callerDone(ctx, key, nil)
		case <-timer.C:
		}
	}
}
