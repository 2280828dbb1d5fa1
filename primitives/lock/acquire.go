package lock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/lockscript"
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

// attempt makes one acquisition attempt; token 0 means "held by someone".
func (c *core) attempt(ctx context.Context, m mode, id string, retry bool) (int64, error) {
	var v backend.Value
	var err error
	switch m {
	case shared:
		r := "0"
		if retry {
			r = "1"
		}
		v, err = c.b.EvalScript(ctx, lockscript.AcquireShared, c.excKeys, id, c.ttlArg, r)
	default:
		wait := "0"
		if m == writer {
			wait = c.waitTTL
		}
		v, err = c.b.EvalScript(ctx, lockscript.Acquire, c.excKeys, id, c.ttlArg, wait)
	}
	if err != nil {
		return 0, err
	}
	return v.Int64()
}

// acquire runs attempts until one succeeds or the policy or ctx ends it.
func (c *core) acquire(ctx context.Context, m mode, p policy) (*Guard, error) {
	id := newAcquisitionID(c.owner)
	if m == writer && p.attempts == 1 {
		m = exclusive // a single attempt never waits, so it does not hold readers back
	}
	var deadline <-chan time.Time
	if p.timeout > 0 {
		t := time.NewTimer(p.timeout)
		defer t.Stop()
		deadline = t.C
	}
	var notify <-chan struct{}
	subscribed := p.attempts == 1 || c.notifier == nil // nothing to subscribe to
	uncertain := false                                 // an attempt may have acquired without our knowing
	var lastErr error
	for n := 0; ; n++ {
		token, err := c.attempt(ctx, m, id, uncertain)
		switch {
		case err == nil && token > 0:
			return newGuard(c, m, id, token, n), nil
		case err == nil:
		case errors.Is(err, backend.ErrClosed) && errors.Is(err, backend.ErrNotApplied):
			// The backend is closed: no attempt can succeed any more. (An
			// indeterminate ErrClosed is a connection closed under a call,
			// which a failover also does: retried.)
			return nil, c.giveUp(ctx, m, id, uncertain, fmt.Errorf("lock %q: %w", c.name, err))
		case errors.Is(err, backend.ErrIndeterminate):
			uncertain = true
			lastErr = err
		case errors.Is(err, backend.ErrNotApplied) && ctx.Err() == nil:
			lastErr = err
		default:
			return nil, c.giveUp(ctx, m, id, uncertain, fmt.Errorf("lock %q: %w", c.name, err))
		}
		if !subscribed && token == 0 {
			// The lock is held: subscribe to releases, then try again at once
			// so that a release between the attempt and the subscription is
			// not missed. An uncontended Lock never pays for the subscription.
			subscribed = true
			if ch, unsub, err := c.notifier.Subscribe(ctx, c.channel); err == nil {
				notify = ch
				defer unsub()
				n--
				continue
			}
		}
		if p.attempts > 0 && n+1 >= p.attempts {
			if p.attempts == 1 {
				if lastErr != nil {
					return nil, c.giveUp(ctx, m, id, uncertain, fmt.Errorf("lock %q: %w", c.name, lastErr))
				}
				return nil, fmt.Errorf("lock %q: %w", c.name, distkit.ErrNotAcquired)
			}
			return nil, c.giveUp(ctx, m, id, uncertain, fmt.Errorf("lock %q: %w", c.name, &distkit.RetriesError{Attempts: n + 1, Last: lastErr}))
		}
		t := time.NewTimer(c.retry)
		select {
		case <-notify:
		case <-t.C:
		case <-deadline:
			t.Stop()
			err := fmt.Errorf("lock %q: %w after %v", c.name, distkit.ErrTimeout, p.timeout)
			if lastErr != nil {
				err = fmt.Errorf("%w (last error: %w)", err, lastErr)
			}
			return nil, c.giveUp(ctx, m, id, uncertain, err)
		case <-ctx.Done():
			t.Stop()
			return nil, c.giveUp(ctx, m, id, uncertain, ctx.Err())
		}
		t.Stop()
	}
}

// giveUp returns err after cleaning up: it releases a lease an attempt
// with an unknown outcome may have taken, and a writer's waiting mark. The
// cleanup is best effort (the lease expires by TTL, the mark after
// 3×RetryInterval) and bounded by TTL/3; the caller waits for it only
// while its ctx lasts, so that a cancelled Lock returns at once even when
// the backend hangs (the cleanup then finishes, or gives up, on its own).
func (c *core) giveUp(ctx context.Context, m mode, id string, uncertain bool, err error) error {
	if !uncertain && m != writer {
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.ttl/3)
		defer cancel()
		if uncertain {
			c.release(cctx, m, id)
		}
		if m == writer {
			c.b.EvalScript(cctx, lockscript.Unmark, []string{c.wwait}, id)
		}
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return err
}

// release removes the lease of acquisition id; false when it was not held.
func (c *core) release(ctx context.Context, m mode, id string) (bool, error) {
	s, key := lockscript.Release, c.lockKey
	if m == shared {
		s, key = lockscript.ReleaseShared, c.readers
	}
	v, err := c.b.EvalScript(ctx, s, []string{key}, id+":", c.channel)
	if err != nil {
		return false, err
	}
	n, err := v.Int64()
	return n == 1, err
}

// renew extends the lease of a held value; false when it is gone.
func (c *core) renew(ctx context.Context, m mode, value string) (bool, error) {
	if m == shared {
		v, err := c.b.EvalScript(ctx, lockscript.RenewShared, []string{c.readers}, value, c.ttlArg)
		if err != nil {
			return false, err
		}
		n, err := v.Int64()
		return n == 1, err
	}
	return c.b.RenewLease(ctx, c.lockKey, value, c.ttl)
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
