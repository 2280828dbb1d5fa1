package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/ratelimitscript"
)

type factorCache struct {
	mu      sync.Mutex
	sup     suppression
	lastUse time.Time
}

// Redis is the provider that decides with one atomic script per decision
// on the backend, using server time.
type Redis struct {
	b       backend.Backend
	cfg     config
	ttl     string
	factors *keyMap[factorCache]
	jan     *janitor
	closed  atomic.Bool
}

// NewRedis returns a Redis provider over b (any backend: the memory one
// too) and starts its idle-key cleanup, which Close stops (or the garbage
// collector, once r is unreachable). Its OnError
// defaults to FailClosed.
func NewRedis(b backend.Backend, opts Options) (*Redis, error) {
	if b == nil {
		return nil, invalid("backend is nil")
	}
	cfg, err := opts.config(FailClosed, false)
	if err != nil {
		return nil, err
	}
	r := &Redis{b: b, cfg: cfg, ttl: driver.Millis(cfg.window + cfg.bucket), factors: newKeyMap[factorCache]()}
	factors := r.factors // the loop must not hold r: it ends when r is collected
	r.jan = startJanitor(max(cfg.idle/2, 10*time.Millisecond), func(context.Context) {
		cutoff := cfg.clock.Now().Add(-cfg.idle)
		factors.sweep(func(f *factorCache) bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.lastUse.Before(cutoff)
		})
	})
	stopWhenCollected(r, r.jan)
	return r, nil
}

// Absolute returns the Absolute strategy on this provider.
func (r *Redis) Absolute() *Absolute { return &Absolute{p: r} }

// Suppressed returns the Suppressed strategy on this provider.
func (r *Redis) Suppressed() *Suppressed { return &Suppressed{p: r} }

func (c *config) keys(key string) []string { return keyspace.RateLimit(c.prefix, key).List() }

// windowReply is the answer of the window script's decision modes.
type windowReply struct {
	admitted bool
	total    int64
	retry    time.Duration // 0: admitted, never fits or unknown
	at       time.Time
}

func (r *Redis) eval(ctx context.Context, mode, key string, limit, n int64) (windowReply, error) {
	v, err := r.b.EvalScript(ctx, ratelimitscript.Window, r.cfg.keys(key), mode, driver.Millis(r.cfg.bucket),
		strconv.FormatInt(r.cfg.nb, 10), strconv.FormatInt(limit, 10), strconv.FormatInt(n, 10), r.ttl)
	if err != nil {
		return windowReply{}, err
	}
	a, err := v.Int64s()
	if err != nil || len(a) != 4 {
		return windowReply{}, fmt.Errorf("ratelimit: malformed reply %v", v)
	}
	return windowReply{admitted: a[0] == ratelimitscript.Admitted, total: a[1],
		retry: time.Duration(max(a[2], 0)) * time.Millisecond, at: time.UnixMilli(a[3])}, nil
}

// degraded is the decision of the failure policy when the backend could
// not decide; local reports whether the policy decided locally.
func degraded(cfg *config, key string, limit, n int64, err error) Decision {
	return Decision{Allowed: cfg.onError == FailOpen && n <= limit, Limit: limit,
		Degraded: fmt.Errorf("ratelimit: key %q: %w", key, err), At: cfg.clock.Now()}
}

func (r *Redis) decide(ctx context.Context, sup bool, key string, rate float64, n int64) (Decision, error) {
	if r.closed.Load() {
		return Decision{}, errClosed(key)
	}
	lim, err := r.cfg.limitsFor(rate)
	if err != nil {
		return Decision{}, err
	}
	if ctx.Err() != nil {
		return Decision{}, callerDone(ctx, key, nil)
	}
	mode, limit := "abs", lim.capacity
	if sup {
		mode, limit = "sup", lim.hard
	}
	w, err := r.eval(ctx, mode, key, limit, n)
	if err != nil {
		if ctx.Err() != nil { // the caller gave up: not the backend's failure
			return Decision{}, callerDone(ctx, key, err)
		}
		return degraded(&r.cfg, key, limit, n, err), nil
	}
	d := Decision{Allowed: w.admitted, Limit: limit, Remaining: max(0, limit-w.total), At: w.at}
	if !w.admitted {
		d.RetryAfter = w.retry
	}
	if !sup {
		return d, nil
	}
	if !w.admitted {
		d.Suppression = 1
		return d, nil
	}
	fc := r.factors.get(key, func() *factorCache { return &factorCache{} })
	now := r.cfg.clock.Now()
	fc.mu.Lock()
	s := fc.sup.get(w.total, lim.capacity, r.cfg.suppressionCache, now)
	fc.lastUse = now
	fc.mu.Unlock()
	d.Suppression, d.Allowed = s, admit(s)
	return d, nil
}

// Close stops the cleanup loop, waiting for it at most until ctx is done
// (then it returns ctx's error; the loop still ends on its own). It does
// not close the backend. Decisions after Close return an error wrapping
// distkit.ErrClosed.
func (r *Redis) Close(ctx context.Context) error {
	r.closed.Store(true)
	return r.jan.close(ctx)
}
