// Package ratelimit is sliding-window rate limiting with limits that read
// like the requirement: ratelimit.PerMinute(100) admits at most 100 units
// in any minute, wherever that minute starts.
//
//	ctx := context.Background()
//	b := memory.New(memory.Options{}) // or a Redis driver
//	l, err := ratelimit.NewRedis(b, ratelimit.Options{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer l.Close(ctx)
//	perClient := ratelimit.PerSecond(10) // 10 in any second: a burst of 10, then 10 per second
//	d, err := l.Absolute().Inc(ctx, "2001:db8::7", perClient, 1)
//	if err != nil {
//		log.Fatal(err) // invalid input, a closed limiter or ctx ended: never a backend outage
//	}
//	fmt.Println(d.Allowed, d.Remaining, d.Degraded)
//
// Three intents, as in golang.org/x/time/rate: Inc (and Allow) decide at
// once; Absolute.Wait blocks until admitted (refusing at once when ctx's
// deadline is too short); a rejection's Decision.RetryAfter says how long
// until the same request fits, for callers that schedule the retry
// themselves. Peek reads a key's window without consuming, Reset empties
// it and SetIf sets its count when a comparator matches. Package
// httplimit (primitives/ratelimit/httplimit) is the net/http middleware.
//
// # Limits and windows
//
// A Limit{N, Period} admits at most N units in any window of length
// Period: the window is the limit's own period, so PerSecond(10) is
// counted over a sliding second and PerHour(1000) over a sliding hour. See
// Limit for what each constructor lets through in the first second. A
// period is cut into Options.Buckets buckets (default 100) of B = ⌈Period
// / Buckets⌉ ms (whole milliseconds); the window spans nb = ⌈Period / B⌉
// buckets, nb·B ≥ Period (equal for every period that Buckets divides into
// whole milliseconds: any whole number of seconds with the default). Use
// one Limit per key: a key used with another period (another bucket size)
// has what it holds re-dated to the current bucket, which is stricter,
// never looser, than either limit.
//
// # Capacity
//
// The capacity of a Limit is N exactly (1 ≤ N ≤ MaxCount). Suppressed's
// hard limit is ⌊N × HardLimitFactor⌋, computed in exact rational
// arithmetic from the factor's shortest decimal form (what fmt prints), a
// product short of an integer by less than 10⁻¹⁴ of itself counting as
// that integer; a hard limit above MaxCount is an error wrapping
// distkit.ErrInvalidOption, as is an invalid Limit (Limit.Validate).
//
// Amounts are exact: n may be anything from 1 to math.MaxInt64; a request
// with n above the limit (Decision.Limit) never fits and is rejected
// without being counted, on every provider; window totals never exceed
// MaxCount.
//
// # The window and its bound
//
// A request at time t (milliseconds) is counted in bucket ⌊t / B⌋, and a
// bucket stays in the window until its last millisecond is more than nb·B
// old: every unit admitted is counted for at least the period and at most
// nb·B + B − 1 ms. Hence every interval (t − Period, t], wherever t lies
// (not only at bucket edges), holds at most N admitted units for
// Absolute, and at most the hard limit for Suppressed:
//
//   - Local: exactly so, on its own clock, to the nanosecond (a request
//     made within a millisecond is counted from the next one).
//   - Redis: exactly so, on the server's clock (TIME, in whole
//     milliseconds, as Decision.At reports it), across every process
//     sharing the key, as long as that clock does not jump back; in real
//     time, for every interval of Period − 1 ms.
//   - Hybrid: N plus what the other instances admitted within
//     2 × (SyncInterval + one sync round trip) before the deciding
//     instance's last admission in the interval: an instance sees another's
//     admissions once that one has pushed them (its next sync) and it has
//     pulled (its own next sync). Under bursts that can be up to N per
//     other instance. One Hybrid instance alone keeps the exact bound (in
//     whole milliseconds, as Redis).
//     While the backend is unreachable (FailLocal), each instance enforces
//     N per window on its own: what it admits meanwhile leaves the window
//     with its bucket (on the local clock), and so does the count it last
//     pulled (the buckets the pull described with their end, the rest at
//     the latest once the bucket the server was in then has left). When
//     the backend is back, only what is still in the window is pushed.
//
// The price of exactness: a bucket's units are released only when its end
// leaves the window, up to B − 1 ms later than a log of every request
// would release them, so a client sending at exactly the rate sees up to
// about 1/Buckets of its requests rejected (1 % with the default). More
// Buckets narrow the gap at the cost of more buckets per key.
//
// # Strategies
//
// Absolute admits while the window count + n ≤ N; a rejection says when
// enough of the oldest buckets will have left the window (RetryAfter).
//
// Suppressed counts all offered traffic. While the offered count in the
// window is at or below N, everything is admitted (Suppression 0). Above
// it, each request is admitted with probability 1 − s, where
//
//	s = 1 − N / offered          (offered count in the window incl. this request)
//
// so s rises smoothly from 0 and the admitted rate stays near N per period
// however much is offered: at 1.5 × N, s = 1/3 and two thirds are
// admitted. Above the hard limit everything is rejected. A key's s is
// reused for SuppressionCache (default 100 ms). Both strategies share a
// key's window.
//
// # Providers
//
//   - Local: in-process, no I/O; per-key locking only.
//   - Redis: one atomic script per call on the backend, server time.
//   - Hybrid: decisions are local, against the global count as of the last
//     sync plus this process's increments since; every SyncInterval
//     (10 ms) one round trip pushes the increments of the keys used since
//     the previous sync and pulls their global counts. Keys nobody uses cost
//     no I/O; the first decision on a key, and on a key unused for two sync
//     intervals, pulls its global count first (one round trip, shared by
//     concurrent callers). Peek answers from the same view; Reset and
//     SetIf act on the server at once (one round trip) and renew the view.
//
// # Failures
//
// The error of a decision (Inc, Allow, Wait, Peek) is non-nil only for
// invalid input (ErrInvalidKey, ErrInvalidOption), a closed limiter
// (ErrClosed), the caller's own context ending, or (Wait) a wait that
// cannot succeed. When the backend fails, OnError decides and the decision
// says so in Degraded, with a nil error, so that `if err != nil` stays the
// check for a broken call: FailClosed (the Redis default) rejects, FailOpen
// admits, FailLocal (the Hybrid default) decides locally against the last
// known global count. On Hybrid a failure is per key: a key the server
// rejects (say it holds another type) is quarantined and retried with
// backoff, and only its own decisions are degraded; a failed sync degrades
// the keys it carried until one succeeds. Reset and SetIf are
// administrative writes: a backend failure is their error (wrapping
// distkit.ErrNotApplied when certainly not applied, ErrIndeterminate when
// it may have been).
//
// # Key layout
//
// <prefix> and <key> stand for the strings as given, with '%', ':', '{',
// '}' and control bytes written as %XX (see package distkit, "Keys"):
//
//	{<prefix>:<key>}:rl:counts   hash   bucket index → count, "t" → window total,
//	                                    "g" → "B/nb" (bucket ms / buckets per window)
//	{<prefix>:<key>}:rl:index    zset   bucket indexes
//
// Both live nb·B + B ms after the last write.
package ratelimit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/internal/ratelimitscript"
)

// MaxCount is the largest limit, hard limit or window total: 2^53 − 1,
// the largest integer Redis' Lua (doubles) computes exactly.
const MaxCount = ratelimitscript.MaxCount

// Decision is the outcome of one Inc.
type Decision struct {
	// Allowed: the request may proceed.
	Allowed bool
	// Limit is what the decision was checked against: the Limit's N
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
	// ReleaseAfter: how long until the window next counts less than now,
	// when the oldest bucket holding anything leaves it; 0 when the window
	// is empty or it is unknown (a degraded decision that was not local,
	// or Hybrid before its view described the oldest bucket). Within
	// ReleaseAfter at most Remaining more units are admitted: the
	// "effective window" of the RateLimit HTTP field.
	ReleaseAfter time.Duration
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

// State is a key's window as Peek reads it, without consuming anything.
type State struct {
	// Limit is the Limit's N (Absolute) or the hard limit (Suppressed).
	Limit int64
	// Count is what the window counts now: admitted units (Absolute),
	// offered units (Suppressed; both strategies share the window).
	// Declined requests are not counted anywhere: keeping a second count
	// would double the writes of every rejection, the hot path under
	// attack; count them from Decisions if you need them.
	Count int64
	// Remaining is max(0, Limit − Count): the units a request made now
	// could have (Absolute) or offer below the hard limit (Suppressed).
	Remaining int64
	// RetryAfter is how long until a one-unit request fits: 0 when it
	// fits now (or the state is degraded and not local).
	RetryAfter time.Duration
	// ReleaseAfter is how long until the window next counts less than
	// now; 0 when it is empty or unknown (as Decision.ReleaseAfter).
	ReleaseAfter time.Duration
	// Suppression (Suppressed) is the factor a one-unit request would be
	// decided with now, computed afresh (not from the cache): 0 at or
	// below the limit, 1 − N / (Count + 1) above it, 1 above the hard
	// limit.
	Suppression float64
	// Degraded is nil when the state was read; otherwise why not (the
	// backend failed: Redis then returns Count 0; Hybrid its last known
	// view).
	Degraded error
	// At is when the state was read: server time for Redis, local time
	// otherwise.
	At time.Time
}

// History is what SetIf does with the buckets a window already holds.
type History int

const (
	// KeepHistory keeps the buckets: a higher value adds the difference
	// to the current bucket; a lower one removes the difference from the
	// newest buckets first, as if the latest admissions were refunded,
	// so what stays leaves the window when it would have.
	KeepHistory History = iota
	// ReplaceHistory drops every bucket and counts the value in the
	// current bucket: it leaves the window one full period from now.
	ReplaceHistory
)

// String returns "KeepHistory" or "ReplaceHistory".
func (h History) String() string {
	switch h {
	case KeepHistory:
		return "KeepHistory"
	case ReplaceHistory:
		return "ReplaceHistory"
	}
	return fmt.Sprintf("History(%d)", int(h))
}

func (h History) script() string {
	if h == ReplaceHistory {
		return ratelimitscript.HistoryReplace
	}
	return ratelimitscript.HistoryKeep
}

// provider is what Local, Redis and Hybrid implement.
type provider interface {
	conf() *config
	decide(ctx context.Context, sup bool, key string, lim limits, g geometry, n int64) (Decision, error)
	peek(ctx context.Context, sup bool, key string, lim limits, g geometry) (State, error)
}

// Absolute is the strategy that admits up to the limit.
type Absolute struct{ p provider }

// Inc asks to admit n units for key under limit. The error is non-nil
// only for invalid input (wrapping distkit.ErrInvalidKey or
// ErrInvalidOption: an invalid Limit, n < 1), a closed provider
// (distkit.ErrClosed) or ctx ending before a decision (ctx.Err()); a
// backend failure gives a degraded decision (Decision.Degraded) and a nil
// error. An n above limit.N is a rejection, never an error.
func (a *Absolute) Inc(ctx context.Context, key string, limit Limit, n int64) (Decision, error) {
	c := a.p.conf()
	lim, g, err := prepare(c, key, limit, n, false)
	if err != nil {
		return Decision{}, err
	}
	d, err := a.p.decide(ctx, false, key, lim, g, n)
	c.obs.decided(ctx, false, d, err)
	return d, err
}

// Allow is Inc with n = 1, reporting only whether it was admitted.
func (a *Absolute) Allow(ctx context.Context, key string, limit Limit) (bool, error) {
	d, err := a.Inc(ctx, key, limit, 1)
	return d.Allowed, err
}

// Peek reads key's window under limit without consuming: what it counts,
// what remains, how long until one more unit fits. Errors as Inc; a
// backend failure gives a State with Degraded set and a nil error.
func (a *Absolute) Peek(ctx context.Context, key string, limit Limit) (State, error) {
	lim, g, err := prepare(a.p.conf(), key, limit, 1, false)
	if err != nil {
		return State{}, err
	}
	return a.p.peek(ctx, false, key, lim, g)
}

// Suppressed is the strategy that sheds load probabilistically above the
// limit and rejects above the hard limit.
type Suppressed struct{ p provider }

// Inc offers n units for key under limit (N is the soft limit, the hard
// limit is ⌊N × HardLimitFactor⌋); errors as Absolute.Inc.
func (s *Suppressed) Inc(ctx context.Context, key string, limit Limit, n int64) (Decision, error) {
	c := s.p.conf()
	lim, g, err := prepare(c, key, limit, n, true)
	if err != nil {
		return Decision{}, err
	}
	d, err := s.p.decide(ctx, true, key, lim, g, n)
	c.obs.decided(ctx, true, d, err)
	return d, err
}

// Allow is Inc with n = 1, reporting only whether it was admitted.
func (s *Suppressed) Allow(ctx context.Context, key string, limit Limit) (bool, error) {
	d, err := s.Inc(ctx, key, limit, 1)
	return d.Allowed, err
}

// Peek reads key's window under limit without offering anything: State
// with the hard limit as Limit and the suppression a one-unit request
// would face now; errors as Absolute.Peek.
func (s *Suppressed) Peek(ctx context.Context, key string, limit Limit) (State, error) {
	lim, g, err := prepare(s.p.conf(), key, limit, 1, true)
	if err != nil {
		return State{}, err
	}
	return s.p.peek(ctx, true, key, lim, g)
}

// prepare checks a call and returns its limits and window geometry.
func prepare(c *config, key string, limit Limit, n int64, sup bool) (limits, geometry, error) {
	if err := distkit.ValidateKey("key", key); err != nil {
		return limits{}, geometry{}, fmt.Errorf("ratelimit: %w", err)
	}
	if n < 1 {
		return limits{}, geometry{}, invalid("n %d must be at least 1", n)
	}
	// Any n ≥ 1 is valid: one above the limit never fits (a rejection).
	lim, err := c.limitsFor(limit, sup)
	if err != nil {
		return limits{}, geometry{}, err
	}
	return lim, geometryOf(limit, c.buckets), nil
}

// checkSet checks SetIf's arguments.
func checkSet(key string, limit Limit, cmp distkit.Comparator, value int64, h History) error {
	if err := distkit.ValidateKey("key", key); err != nil {
		return fmt.Errorf("ratelimit: %w", err)
	}
	if err := limit.Validate(); err != nil {
		return err
	}
	if err := cmp.Validate(); err != nil {
		return fmt.Errorf("ratelimit: SetIf: %w", err)
	}
	if value < 0 || value > MaxCount {
		return invalid("SetIf value %d must be between 0 and MaxCount %d", value, int64(MaxCount))
	}
	if h != KeepHistory && h != ReplaceHistory {
		return invalid("unknown %v", h)
	}
	return nil
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

// peekState is the State of a window counting count, for a limit (the
// RetryAfter and ReleaseAfter are the caller's).
func peekState(sup bool, lim limits, count int64, at time.Time) State {
	st := State{Limit: lim.capacity, Count: count, At: at}
	if sup {
		st.Limit = lim.hard
		switch {
		case count+1 > lim.hard:
			st.Suppression = 1
		default:
			st.Suppression = factor(count+1, lim.capacity)
		}
	}
	st.Remaining = max(0, st.Limit-count)
	return st
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
