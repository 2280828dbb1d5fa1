package ratelimit

import (
	"context"
	"fmt"
	"sync"
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
}

// NewRedis returns a Redis provider over b (any backend: the memory one
// too) and starts its idle-key cleanup, which Close stops. Its OnError
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
	r.jan = startJanitor(max(cfg.idle/2, 10*time.Millisecond), func(context.Context) {
		cutoff := time.Now().Add(-cfg.idle)
		r.factors.sweep(func(f *factorCache) bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.lastUse.Before(cutoff)
		})
	})
	return r, nil
}

// Absolute returns the Absolute strategy on this provider.
func (r *Redis) Absolute() *Absolute { return &Absolute{p: r} }

// Suppressed returns the Suppressed strategy on this provider.
func (r *Redis) Suppressed() *Suppressed { return &Suppressed{p: r} }

func (c *config) keys(key string) []string { return keyspace.RateLimit(c.prefix, key).List() }

// windowReply is ratelimitscript.Window's answer.
type windowReply struct {
	allowed bool
	total   int64
	retry   time.Duration
	at      time.Time
}

func evalWindow(ctx context.Context, b backend.Backend, cfg *config, ttl, mode, key string, limit float64, n int64) (windowReply, error) {
	v, err := b.EvalScript(ctx, ratelimitscript.Window, cfg.keys(key), mode, driver.Millis(cfg.bucket),
		fmt.Sprint(cfg.nb), fmtFloat(limit), fmt.Sprint(n), ttl)
	if err != nil {
		return windowReply{}, err
	}
	return parseWindow(v)
}

func parseWindow(v backend.Value) (windowReply, error) {
	a, err := v.Int64s()
	if err != nil || len(a) != 4 {
		return windowReply{}, fmt.Errorf("ratelimit: malformed reply %v", v)
	}
	return windowReply{allowed: a[0] == 1, total: a[1], retry: time.Duration(max(a[2], 0)) * time.Millisecond,
		at: time.UnixMilli(a[3])}, nil
}

// onError applies the failure policy.
func onError(p FailurePolicy, key string, err error) (Decision, error) {
	err = fmt.Errorf("ratelimit: key %q: %w", key, err)
	return Decision{Allowed: p == FailOpen, At: time.Now()}, err
}

func (r *Redis) decide(ctx context.Context, sup bool, key string, rate float64, n int64) (Decision, error) {
	capacity := r.cfg.capacity(rate)
	if !sup {
		w, err := evalWindow(ctx, r.b, &r.cfg, r.ttl, "abs", key, capacity, n)
		if err != nil {
			return onError(r.cfg.onError, key, err)
		}
		d := Decision{Allowed: w.allowed, At: w.at, Remaining: remaining(capacity, w.total)}
		if !w.allowed {
			d.RetryAfter = w.retry
		}
		return d, nil
	}
	hard := capacity * r.cfg.hlf
	w, err := evalWindow(ctx, r.b, &r.cfg, r.ttl, "sup", key, hard, n)
	if err != nil {
		return onError(r.cfg.onError, key, err)
	}
	d := Decision{At: w.at, Remaining: remaining(hard, w.total)}
	if !w.allowed {
		d.Suppression, d.RetryAfter = 1, w.retry
		return d, nil
	}
	fc := r.factors.get(key, func() *factorCache { return &factorCache{} })
	now := time.Now()
	fc.mu.Lock()
	s := fc.sup.get(w.total, capacity, r.cfg.suppressionCache, now)
	fc.lastUse = now
	fc.mu.Unlock()
	d.Suppression, d.Allowed = s, admit(s)
	return d, nil
}

// Close stops the cleanup loop, waiting for it at most until ctx is done
// (then it returns ctx's error; the loop still ends on its own). It does
// not close the backend; decisions keep working afterwards.
func (r *Redis) Close(ctx context.Context) error { return r.jan.close(ctx) }
