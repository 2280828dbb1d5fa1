// Package ratelimit is sliding-window rate limiting: a window (default
// 60 s) cut into buckets (default 100 ms); a rate r per second (fractional
// allowed) allows a capacity of ⌊r × window⌋ requests in any window.
//
//	ctx := context.Background()
//	b := memory.New(memory.Options{}) // or a Redis driver
//	l, err := ratelimit.NewRedis(b, ratelimit.Options{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer l.Close(ctx)
//	d, err := l.Absolute().Inc(ctx, "2001:db8::7", 10, 1) // 10/s = 600 per minute for this client
//	if err != nil {
//		log.Fatal(err) // invalid input, a closed limiter or ctx ended: never a backend outage
//	}
//	fmt.Println(d.Allowed, d.Remaining, d.Degraded)
//
// # Capacity
//
// The capacity C of a window W at rate r is ⌊r × W⌋, computed in exact
// rational arithmetic from the shortest decimal form of r (what fmt prints:
// 2.05, 0.7), never in float64: 2.05/s over 60 s is 123 on every provider,
// although 2.05 × 60 is 122.99999999999999 in float64. A product short of an
// integer by less than 10⁻¹⁴ of itself counts as that integer, so that a
// rate computed as a quotient gets the capacity meant (1.0/60 per second is
// 0.016666666666666666: one per minute). Suppressed's hard limit is
// ⌊r × W × HardLimitFactor⌋ by the same rule. A rate whose capacity is below
// 1 (0.01/s over 60 s) is an error wrapping distkit.ErrInvalidOption, as is
// one whose capacity or hard limit exceeds MaxCount (2^53 − 1, the largest
// integer Redis' Lua computes exactly).
//
// Amounts are exact: n may be anything from 1 to math.MaxInt64; a request
// with n above the limit (Decision.Limit) never fits and is rejected
// without being counted, on every provider; window totals never exceed
// MaxCount.
//
// # The window and its bound
//
// A request at time t (milliseconds) is counted in bucket ⌊t / Bucket⌋, and
// a bucket stays in the window until its last millisecond is more than
// Window old: every unit admitted is counted for at least Window and at
// most Window + Bucket − 1 ms. Hence every interval (t − Window, t],
// wherever t lies (not only at bucket edges), holds at most C admitted
// units for Absolute, and at most the hard limit for Suppressed:
//
//   - Local: exactly so, on its own clock, to the nanosecond (a request
//     made within a millisecond is counted from the next one).
//   - Redis: exactly so, on the server's clock (TIME, in whole
//     milliseconds, as Decision.At reports it), across every process
//     sharing the key, as long as that clock does not jump back; in real
//     time, for every interval of Window − 1 ms.
//   - Hybrid: C plus what the other instances admitted within
//     2 × (SyncInterval + one sync round trip) before the deciding
//     instance's last admission in the interval: an instance sees another's
//     admissions once that one has pushed them (its next sync) and it has
//     pulled (its own next sync). Under bursts that can be up to C per
//     other instance. One Hybrid instance alone keeps the exact bound (in
//     whole milliseconds, as Redis).
//     While the backend is unreachable (FailLocal), each instance enforces
//     C on its own, stricter than per window: what it admits meanwhile and
//     the count it last pulled only leave once the backend is back (an
//     outage longer than Window rejects everything after C).
//
// The price of exactness: a bucket's units are released only when its end
// leaves the window, up to Bucket − 1 ms later than a log of every request
// would release them, so a client sending at exactly the rate sees up to
// about Bucket / Window of its requests rejected (0.17 % with the
// defaults). A smaller Bucket narrows the gap at the cost of more buckets.
//
// # Strategies
//
// Absolute admits while the window count + n ≤ C; a rejection says when
// enough of the oldest buckets will have left the window (RetryAfter).
//
// Suppressed counts all offered traffic. While the observed rate (offered
// count in the window / window) is at or below the rate, everything is
// admitted (Suppression 0). Above it, each request is admitted with
// probability 1 − s, where
//
//	s = 1 − C / observed          (observed = offered count incl. this request)
//
// so s rises smoothly from 0 and the admitted rate stays near the soft rate
// however much is offered: at 1.5× the rate, s = 1/3 and two thirds are
// admitted. Above the hard limit everything is rejected. A key's s is
// reused for SuppressionCache (default 100 ms).
//
// # Providers
//
//   - Local: in-process, no I/O; per-key locking only.
//   - Redis: one atomic script per decision on the backend, server time.
//   - Hybrid: decisions are local, against the global count as of the last
//     sync plus this process's increments since; every SyncInterval
//     (10 ms) one round trip pushes the increments of the keys used since
//     the previous sync and pulls their global counts. Keys nobody uses cost
//     no I/O; the first decision on a key, and on a key unused for two sync
//     intervals, pulls its global count first (one round trip, shared by
//     concurrent callers).
//
// # Failures
//
// The error of a decision is non-nil only for invalid input (ErrInvalidKey,
// ErrInvalidOption), a closed limiter (ErrClosed) or the caller's own
// context ending. When the backend fails, OnError decides and the decision
// says so in Degraded, with a nil error, so that `if err != nil` stays the
// check for a broken call: FailClosed (the Redis default) rejects, FailOpen
// admits, FailLocal (the Hybrid default) decides locally against the last
// known global count. On Hybrid a failure is per key: a key the server
// rejects (say it holds another type) is quarantined and retried with
// backoff, and only its own decisions are degraded; a failed sync degrades
// the keys it carried until one succeeds.
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
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/internal/ratelimitscript"
)

// MaxCount is the largest capacity, hard limit or window total: 2^53 − 1,
// the largest integer Redis' Lua (doubles) computes exactly.
const MaxCount = ratelimitscript.MaxCount

// Decision is the outcome of one Inc.
type Decision struct {
	// Allowed: the request may proceed.
	Allowed bool
	// Limit is what the decision was checked against: the capacity
	// (Absolute) or the hard limit (Suppressed). A request with n > Limit
	// never fits: it is rejected, not counted, and RetryAfter is 0.
	Limit int64
	// Remaining: how many more units the window takes now: an Absolute
	// request with n ≤ Remaining made at once is admitted, one with
	// n > Remaining is not; for Suppressed, the units below the hard limit.
	// Never negative; 0 when the decision was degraded and not local.
	Remaining int64
	// RetryAfter (rejections): how long until enough of the window will
	// have expired for the same request to fit; 0 when it never fits, for a
	// probabilistic (Suppressed) rejection, or when unknown (a degraded
	// decision). Hybrid computes it from the oldest buckets seen at its
	// last sync and its own increments not yet pushed: a lower bound,
	// exact for one instance whose increments were pushed (the server
	// counts an increment from the bucket it is pushed in, up to
	// SyncInterval after it was decided: possibly one bucket later).
	RetryAfter time.Duration
	// Suppression (Suppressed): the factor s used for this decision, in
	// [0, 1]; 1 above the hard limit.
	Suppression float64
	// Degraded is nil for a normal decision. Otherwise the backend could
	// not decide (it failed, or the key is quarantined) and the failure
	// policy (Options.OnError) made this decision; Degraded says why and
	// wraps the backend's error (errors.Is(d.Degraded,
	// distkit.ErrNotApplied), …). The call's error is nil for a degraded
	// decision.
	Degraded error
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

// Inc asks to admit n units for key at rate per second. The error is
// non-nil only for invalid input (wrapping distkit.ErrInvalidKey or
// ErrInvalidOption, e.g. a rate allowing less than one request per
// window), a closed provider (distkit.ErrClosed) or ctx ending before a
// decision (ctx.Err()); a backend failure gives a degraded decision
// (Decision.Degraded) and a nil error.
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

// Inc offers n units for key at rate per second; errors as Absolute.Inc.
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
func factor(offered, capacity int64) float64 {
	if offered <= capacity || offered <= 0 {
		return 0
	}
	return 1 - float64(capacity)/float64(offered)
}

// suppression caches a key's suppression factor for SuppressionCache.
type suppression struct {
	factor float64
	at     time.Time
}

// get returns the factor for offered, recomputing the cached one when it
// is older than cache.
func (s *suppression) get(offered, capacity int64, cache time.Duration, now time.Time) float64 {
	if s.at.IsZero() || now.Sub(s.at) >= cache || now.Before(s.at) {
		s.factor, s.at = factor(offered, capacity), now
	}
	return s.factor
}

// judge is the decision of the in-process providers (Local against its
// window, Hybrid against the global count as of the last sync plus its own
// traffic since): count is what the window holds before this request, at
// most a few times MaxCount (so no sum here overflows). It reports whether
// n is to be recorded: Absolute records admissions, Suppressed records
// offered traffic that fits the window (total ≤ MaxCount). RetryAfter is
// left to the caller, which knows its buckets. It is the Go rendering of
// the window script's decision modes and must agree with them.
func judge(cfg *config, sup bool, lim limits, n, count int64, sc *suppression, now time.Time) (d Decision, record bool) {
	d.At = now
	if !sup {
		d.Limit = lim.capacity
		if n <= lim.capacity && n <= lim.capacity-count {
			d.Allowed, d.Remaining = true, lim.capacity-count-n
			return d, true
		}
		d.Remaining = max(0, lim.capacity-count)
		return d, false
	}
	d.Limit = lim.hard
	if n > lim.hard || n > MaxCount-count { // never fits, or beyond any window
		d.Suppression, d.Remaining = 1, max(0, lim.hard-count)
		return d, false
	}
	offered := count + n
	if offered > lim.hard {
		d.Suppression = 1
		return d, true
	}
	s := sc.get(offered, lim.capacity, cfg.suppressionCache, now)
	d.Suppression, d.Allowed, d.Remaining = s, admit(s), lim.hard-offered
	return d, true
}

func admit(s float64) bool { return s <= 0 || rand.Float64() >= s }

// errClosed is a decision's error on a closed provider.
func errClosed(key string) error {
	return fmt.Errorf("ratelimit: key %q: %w", key, distkit.ErrClosed)
}

// callerDone is a decision's error when the caller's context ended; err is
// what the backend said, if anything.
func callerDone(ctx context.Context, key string, err error) error {
	if err == nil {
		return fmt.Errorf("ratelimit: key %q: %w", key, ctx.Err())
	}
	return fmt.Errorf("ratelimit: key %q: %w: %w", key, ctx.Err(), err)
}
