// Package ratelimit is sliding-window rate limiting: a window (default
// 60 s) cut into buckets (default 100 ms); the count in the window is the
// sum of its live buckets; a rate r per second (fractional allowed) allows
// a capacity of r × window.
//
//	ctx := context.Background()
//	b := memory.New(memory.Options{}) // or a Redis driver
//	l, err := ratelimit.NewRedis(b, ratelimit.Options{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer l.Close(ctx)
//	ok, err := l.Absolute().Allow(ctx, "2001:db8::7", 10) // 10/s = 600 per minute for this client
//	fmt.Println(ok, err)
//
// # Strategies
//
// Absolute admits while the window count + n ≤ capacity; a rejection says
// when enough of the oldest buckets will have left the window (RetryAfter).
//
// Suppressed counts all offered traffic. While the observed rate (offered
// count in the window / window) is at or below the rate, everything is
// admitted (Suppression 0). Above it, each request is admitted with
// probability 1 − s, where
//
//	s = 1 − capacity / observed          (observed = offered count incl. this request)
//
// so s rises smoothly from 0 and the admitted rate stays near the soft rate
// however much is offered: at 1.5× the rate, s = 1/3 and two thirds are
// admitted. Above HardLimitFactor × capacity everything is rejected. A
// key's s is reused for SuppressionCache (default 100 ms).
//
// # Providers
//
//   - Local: in-process, no I/O; per-key locking only.
//   - Redis: one atomic script per decision on the backend, server time.
//   - Hybrid: decisions are local, against the global count as of the last
//     sync plus this process's increments since; every SyncInterval
//     (10 ms) one round trip pushes the local increments of all active keys
//     and pulls their global counts. Overshoot bound: between two syncs each
//     of I instances decides without seeing the others' new traffic, so a
//     window can exceed capacity by at most what the other I − 1 instances
//     admit within one SyncInterval plus one sync round trip.
//
// A sliding window measured between arbitrary instants (not bucket
// boundaries) may hold up to one bucket's worth of admissions more than
// capacity: buckets leave the window whole.
//
// # Failures
//
// OnError chooses what a decision is when the backend fails: FailClosed
// (the Redis default) rejects, FailOpen admits; Hybrid by default keeps
// deciding locally (FailLocal) until the backend answers again. Every such
// decision is returned together with the backend's error.
//
// # Key layout
//
// <prefix> and <key> stand for the strings as given, with '%', ':', '{',
// '}' and control bytes written as %XX (see package distkit, "Keys"):
//
//	{<prefix>:<key>}:rl:counts   hash   bucket index → count, "t" → window total (PX window + bucket)
//	{<prefix>:<key>}:rl:index    zset   bucket indexes (PX window + bucket)
package ratelimit

import (
	"context"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Decision is the outcome of one Inc.
type Decision struct {
	// Allowed: the request may proceed.
	Allowed bool
	// RetryAfter (rejections): when enough of the window will have expired
	// for the same request to fit; 0 when unknown or not applicable.
	RetryAfter time.Duration
	// Remaining: how much more the window admits now (Absolute: below
	// capacity; Suppressed: below the hard limit); never negative.
	Remaining int64
	// Suppression (Suppressed): the factor s used for this decision, in
	// [0, 1]; 1 above the hard limit.
	Suppression float64
	// At is when the decision was made: server time for Redis, local time
	// otherwise.
	At time.Time
}

// provider is what Local, Redis and Hybrid implement.
type provider interface {
	decide(ctx context.Context, sup bool, key string, rate float64, n int64) (Decision, error)
}

// Absolute is the strategy that admits up to capacity.
type Absolute struct{ p provider }

// Inc asks to admit n units for key at rate per second.
func (a *Absolute) Inc(ctx context.Context, key string, rate float64, n int64) (Decision, error) {
	if err := checkCall(key, rate, n); err != nil {
		return Decision{}, err
	}
	return a.p.decide(ctx, false, key, rate, n)
}

// Allow is Inc with n = 1, reporting only whether it was admitted.
func (a *Absolute) Allow(ctx context.Context, key string, rate float64) (bool, error) {
	d, err := a.Inc(ctx, key, rate, 1)
	return d.Allowed, err
}

// Suppressed is the strategy that sheds load probabilistically above the
// rate and rejects above the hard limit.
type Suppressed struct{ p provider }

// Inc offers n units for key at rate per second.
func (s *Suppressed) Inc(ctx context.Context, key string, rate float64, n int64) (Decision, error) {
	if err := checkCall(key, rate, n); err != nil {
		return Decision{}, err
	}
	return s.p.decide(ctx, true, key, rate, n)
}

// Allow is Inc with n = 1, reporting only whether it was admitted.
func (s *Suppressed) Allow(ctx context.Context, key string, rate float64) (bool, error) {
	d, err := s.Inc(ctx, key, rate, 1)
	return d.Allowed, err
}

// factor is the suppression factor for an offered count.
func factor(offered int64, capacity float64) float64 {
	if float64(offered) <= capacity || offered <= 0 {
		return 0
	}
	return 1 - capacity/float64(offered)
}

// suppression caches a key's suppression factor for SuppressionCache.
type suppression struct {
	factor float64
	at     time.Time
}

// get returns the factor for offered, recomputing the cached one when it
// is older than cache.
func (s *suppression) get(offered int64, capacity float64, cache time.Duration, now time.Time) float64 {
	if s.at.IsZero() || now.Sub(s.at) >= cache {
		s.factor, s.at = factor(offered, capacity), now
	}
	return s.factor
}

// judge is the decision of the in-process providers (Local against its
// window, Hybrid against the global count as of the last sync plus its own
// traffic since): count is what the window holds before this request. It
// reports whether n is to be recorded: Absolute records admissions,
// Suppressed records all offered traffic. RetryAfter is left to the caller,
// which knows its buckets.
func judge(cfg *config, sup bool, rate float64, n, count int64, sc *suppression, now time.Time) (d Decision, record bool) {
	d.At = now
	capacity := cfg.capacity(rate)
	if !sup {
		if float64(count+n) <= capacity+1e-9 {
			d.Allowed, d.Remaining = true, remaining(capacity, count+n)
			return d, true
		}
		d.Remaining = remaining(capacity, count)
		return d, false
	}
	hard := capacity * cfg.hlf
	offered := count + n
	if float64(offered) > hard+1e-9 {
		d.Suppression = 1
		return d, true
	}
	s := sc.get(offered, capacity, cfg.suppressionCache, now)
	d.Suppression, d.Allowed, d.Remaining = s, admit(s), remaining(hard, offered)
	return d, true
}

// remaining is how much fits below limit after count.
func remaining(limit float64, count int64) int64 {
	return max(0, int64(math.Floor(limit+1e-9))-count)
}

func admit(s float64) bool { return s <= 0 || rand.Float64() >= s }

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
