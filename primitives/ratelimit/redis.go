package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
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
	cfg.obs = newRLObs(opts, "redis", cfg.prefix)
	r := &Redis{b: b, cfg: cfg, factors: newKeyMap[factorCache]()}
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

func (r *Redis) conf() *config { return &r.cfg }

func (c *config) keys(key string) []string { return keyspace.RateLimit(c.prefix, key).List() }

// windowArgs are the arguments every mode but reset starts with.
func windowArgs(mode string, g geometry, extra ...string) []string {
	return append([]string{mode, strconv.FormatInt(g.bucketMs, 10), strconv.FormatInt(g.nb, 10),
		strconv.FormatInt(g.ttlMs(), 10)}, extra...)
}

func ms(v int64) time.Duration { return time.Duration(max(v, 0)) * time.Millisecond }

// windowReply is the answer of the window script's decision modes.
type windowReply struct {
	admitted bool
	total    int64
	retry    time.Duration // 0: admitted, never fits or unknown
	release  time.Duration
	at       time.Time
}

func (r *Redis) eval(ctx context.Context, mode, key string, g geometry, limit, n int64) (windowReply, error) {
	v, err := r.b.EvalScript(ctx, ratelimitscript.Window, r.cfg.keys(key),
		windowArgs(mode, g, strconv.FormatInt(limit, 10), strconv.FormatInt(n, 10))...)
	if err != nil {
		return windowReply{}, err
	}
	a, err := v.Int64s()
	if err != nil || len(a) != 5 {
		return windowReply{}, fmt.Errorf("ratelimit: malformed reply %v", v)
	}
	return windowReply{admitted: a[0] == ratelimitscript.Admitted, total: a[1], retry: ms(a[2]),
		at: time.UnixMilli(a[3]), release: ms(a[4])}, nil
}

// degraded is the decision of the failure policy when the backend could
// not decide.
func degraded(cfg *config, key string, limit, n int64, err error) Decision {
	return Decision{Allowed: cfg.onError == FailOpen && n <= limit, Limit: limit,
		Degraded: fmt.Errorf("ratelimit: key %q: %w", key, err), At: cfg.clock.Now()}
}

func (r *Redis) decide(ctx context.Context, sup bool, key string, lim limits, g geometry, n int64) (Decision, error) {
	if r.closed.Load() {
		return Decision{}, errClosed(key)
	}
	if ctx.Err() != nil {
		return Decision{}, callerDone(ctx, key, nil)
	}
	mode, limit := ratelimitscript.ModeAbsolute, lim.capacity
	if sup {
		mode, limit = ratelimitscript.ModeSuppressed, lim.hard
	}
	w, err := r.eval(ctx, mode, key, g, limit, n)
	if err != nil {
		if ctx.Err() != nil { // the caller gave up: not the backend's failure
			return Decision{}, callerDone(ctx, key, err)
		}
		return degraded(&r.cfg, key, limit, n, err), nil
	}
	d := Decision{Allowed: w.admitted, Limit: limit, Remaining: max(0, limit-w.total), ReleaseAfter: w.release, At: w.at}
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

func (r *Redis) peek(ctx context.Context, sup bool, key string, lim limits, g geometry) (State, error) {
	if r.closed.Load() {
		return State{}, errClosed(key)
	}
	if ctx.Err() != nil {
		return State{}, callerDone(ctx, key, nil)
	}
	limit := lim.capacity
	if sup {
		limit = lim.hard
	}
	v, err := r.b.EvalScript(ctx, ratelimitscript.Window, r.cfg.keys(key),
		windowArgs(ratelimitscript.ModePeek, g, strconv.FormatInt(limit, 10), "1")...)
	var a []int64
	if err == nil {
		if a, err = v.Int64s(); err == nil && len(a) != 4 {
			err = fmt.Errorf("ratelimit: malformed reply %v", v)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return State{}, callerDone(ctx, key, err)
		}
		st := peekState(sup, lim, 0, r.cfg.clock.Now())
		st.Remaining, st.Suppression = 0, 0
		st.Degraded = fmt.Errorf("ratelimit: key %q: %w", key, err)
		return st, nil
	}
	st := peekState(sup, lim, a[0], time.UnixMilli(a[2]))
	st.RetryAfter, st.ReleaseAfter = ms(a[1]), ms(a[3])
	return st, nil
}

// Reset deletes key's window on the backend: its next decision, on every
// provider sharing the prefix, starts from nothing (a Hybrid elsewhere
// still pushes what it admitted and not yet pushed). The error is non-nil
// for invalid input, a closed provider, ctx ending or a backend failure
// (wrapping distkit.ErrNotApplied when the window was certainly not
// deleted, ErrIndeterminate when it may have been).
func (r *Redis) Reset(ctx context.Context, key string) error {
	if err := distkit.ValidateKey("key", key); err != nil {
		return fmt.Errorf("ratelimit: %w", err)
	}
	if r.closed.Load() {
		return errClosed(key)
	}
	if _, err := r.b.EvalScript(ctx, ratelimitscript.Window, r.cfg.keys(key), ratelimitscript.ModeReset); err != nil {
		return fmt.Errorf("ratelimit: reset key %q: %w", key, err)
	}
	return nil
}

// SetIf sets key's window count (what Peek reports as Count) to value
// when cmp matches the current count, in one atomic script, keeping or
// replacing the buckets it holds (History); it returns the count after
// and before: (value, prev) on a match, (prev, prev) otherwise. limit
// gives the window (only its Period matters). value may exceed limit.N
// (the key is then rejected until enough has left). Errors: invalid input
// (ErrInvalidKey, ErrInvalidOption: an invalid Limit or comparator, a
// value outside 0 to MaxCount), a closed provider, ctx ending, or a
// backend failure (wrapping distkit.ErrNotApplied or ErrIndeterminate).
func (r *Redis) SetIf(ctx context.Context, key string, limit Limit, cmp distkit.Comparator, value int64, h History) (cur, prev int64, err error) {
	if err := checkSet(key, limit, cmp, value, h); err != nil {
		return 0, 0, err
	}
	if r.closed.Load() {
		return 0, 0, errClosed(key)
	}
	g := geometryOf(limit, r.cfg.buckets)
	v, err := r.b.EvalScript(ctx, ratelimitscript.Window, r.cfg.keys(key), setArgs(g, 0, cmp, value, h)...)
	if err != nil {
		return 0, 0, fmt.Errorf("ratelimit: set key %q: %w", key, err)
	}
	rep, err := parseSet(v)
	if err != nil {
		return 0, 0, err
	}
	return rep.cur, rep.prev, nil
}

func setArgs(g geometry, push int64, cmp distkit.Comparator, value int64, h History) []string {
	return windowArgs(ratelimitscript.ModeSet, g, strconv.FormatInt(push, 10), cmp.Op.String(),
		strconv.FormatInt(cmp.Operand, 10), strconv.FormatInt(value, 10), h.script())
}

// setReply is the answer of the window script's set mode.
type setReply struct {
	matched   bool
	cur, prev int64
	at        time.Time
}

func parseSet(v backend.Value) (setReply, error) {
	a, err := v.Int64s()
	if err != nil || len(a) != 4 {
		return setReply{}, fmt.Errorf("ratelimit: malformed set reply %v", v)
	}
	return setReply{matched: a[0] == 1, cur: a[1], prev: a[2], at: time.UnixMilli(a[3])}, nil
}

// Close stops the cleanup loop, waiting for it at most until ctx is done
// (then it returns ctx's error; the loop still ends on its own). It does
// not close the backend. Calls after Close return an error wrapping
// distkit.ErrClosed.
func (r *Redis) Close(ctx context.Context) error {
	r.closed.Store(true)
	return r.jan.close(ctx)
}
