package parity

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/ratelimitscript"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// hsetScript writes one hash field: it plants values the window script
// must refuse (corrupt counts).
var hsetScript = driver.NewScript("parity-hset", `return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])`,
	func(st driver.Store, keys, args []string) (backend.Value, error) {
		_, had, err := st.HGet(keys[0], args[0])
		if err != nil {
			return backend.Value{}, err
		}
		if had {
			return backend.Int(0), st.HSet(keys[0], args[0], args[1])
		}
		return backend.Int(1), st.HSet(keys[0], args[0], args[1])
	})

// span renders a duration as a range that does not depend on where in a
// bucket the clock is.
func span(d time.Duration) string {
	switch {
	case d < 0:
		return "negative"
	case d == 0:
		return "0"
	case d < 1100*time.Millisecond:
		return "in-window"
	}
	return "beyond"
}

// renderDecision renders what does not depend on where in a bucket the
// clock is; RetryAfter and ReleaseAfter as ranges.
func renderDecision(d ratelimit.Decision, err error) string {
	allowed := fmt.Sprint(d.Allowed)
	if d.Suppression > 0 && d.Suppression < 1 {
		allowed = "random"
	}
	return Outcome(fmt.Sprintf("allowed=%s limit=%d remaining=%d retry=%s release=%s suppression=%.4f degraded=%v",
		allowed, d.Limit, d.Remaining, span(d.RetryAfter), span(d.ReleaseAfter), d.Suppression, d.Degraded != nil), err)
}

// renderState renders a Peek the same way.
func renderState(st ratelimit.State, err error) string {
	return Outcome(fmt.Sprintf("peek limit=%d count=%d remaining=%d retry=%s release=%s suppression=%.4f degraded=%v",
		st.Limit, st.Count, st.Remaining, span(st.RetryAfter), span(st.ReleaseAfter), st.Suppression, st.Degraded != nil), err)
}

// rateLimitScenario drives the window script in every mode, through the
// providers and directly: capacities and hard limits, huge and malformed
// amounts, saturation, Peek, SetIf with both histories and every
// comparator edge, Reset, a key used with another geometry, corrupt stored
// values, the sync mode's bucket profile, and Hybrid against the Redis
// provider's window.
var rateLimitScenario = Scenario{Name: "RateLimit", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	var out []string
	rec := func(d ratelimit.Decision, err error) { out = append(out, renderDecision(d, err)) }
	peek := func(st ratelimit.State, err error) { out = append(out, renderState(st, err)) }
	set := func(cur, prev int64, err error) { out = append(out, Outcome(fmt.Sprintf("set %d %d", cur, prev), err)) }
	opts := ratelimit.Options{Prefix: p, Buckets: 10, HardLimitFactor: 2, SuppressionCache: time.Nanosecond}
	r, err := ratelimit.NewRedis(b, opts)
	if err != nil {
		return []string{Outcome(nil, err)}
	}
	defer r.Close(ctx)
	five := ratelimit.PerSecond(5)
	for _, n := range []int64{2, 2, 1, 1, 2} { // reaches the limit (5) exactly, then goes over
		rec(r.Absolute().Inc(ctx, "a", five, n))
	}
	huge := []int64{math.MaxInt64, math.MaxInt64 - 1, 1e17, 1 << 53, 1<<53 - 1, 11, 10}
	for _, n := range huge {
		rec(r.Absolute().Inc(ctx, "a", five, n))
		rec(r.Suppressed().Inc(ctx, "hs", five, n))
	}
	rec(r.Absolute().Inc(ctx, "f", ratelimit.Per(5, 2*time.Second), 5))
	rec(r.Absolute().Inc(ctx, "f", ratelimit.Per(5, 2*time.Second), 1))
	for range 12 {
		rec(r.Suppressed().Inc(ctx, "s", five, 1))
	}
	rec(r.Absolute().Inc(ctx, "s", five, 1)) // strategies share the window
	for _, bad := range []ratelimit.Limit{{}, ratelimit.PerSecond(0), ratelimit.Per(1, 1500*time.Microsecond),
		ratelimit.PerSecond(ratelimit.MaxCount + 1), ratelimit.Per(1, ratelimit.MaxPeriod+time.Second)} {
		rec(r.Absolute().Inc(ctx, "bad", bad, 1))
	}
	rec(r.Suppressed().Inc(ctx, "bad", ratelimit.PerSecond(ratelimit.MaxCount), 1)) // hard limit 2 × MaxCount
	minute, _ := ratelimit.NewRedis(b, ratelimit.Options{Prefix: p})
	defer minute.Close(ctx)
	m123 := ratelimit.PerMinute(123)
	rec(minute.Absolute().Inc(ctx, "m", m123, 122))
	rec(minute.Absolute().Inc(ctx, "m", m123, 1))
	rec(minute.Absolute().Inc(ctx, "m", m123, 1))

	// Peek consumes nothing.
	peek(r.Absolute().Peek(ctx, "a", five))
	peek(r.Absolute().Peek(ctx, "a", five))
	peek(r.Suppressed().Peek(ctx, "s", five))
	peek(r.Absolute().Peek(ctx, "absent", five))
	peek(r.Suppressed().Peek(ctx, "hs", five))
	peek(minute.Absolute().Peek(ctx, "m", m123))

	// SetIf: both histories, comparator edges, invalid input.
	rec(r.Absolute().Inc(ctx, "set", five, 3))
	set(r.SetIf(ctx, "set", five, distkit.Gt(2), 1, ratelimit.KeepHistory))
	set(r.SetIf(ctx, "set", five, distkit.Eq(5), 4, ratelimit.KeepHistory))
	set(r.SetIf(ctx, "set", five, distkit.Le(1), 4, ratelimit.KeepHistory))
	rec(r.Absolute().Inc(ctx, "set", five, 2))
	set(r.SetIf(ctx, "set", five, distkit.Always(), 7, ratelimit.ReplaceHistory))
	peek(r.Absolute().Peek(ctx, "set", five))
	set(r.SetIf(ctx, "set", five, distkit.Ge(math.MinInt64), 0, ratelimit.ReplaceHistory))
	peek(r.Absolute().Peek(ctx, "set", five))
	set(r.SetIf(ctx, "set", five, distkit.Lt(math.MinInt64), 3, ratelimit.KeepHistory))
	set(r.SetIf(ctx, "set", five, distkit.Le(math.MaxInt64), ratelimit.MaxCount, ratelimit.KeepHistory))
	rec(r.Absolute().Inc(ctx, "set", five, 1))
	rec(r.Suppressed().Inc(ctx, "set", five, 1))
	set(r.SetIf(ctx, "set", five, distkit.Ne(0), 0, ratelimit.KeepHistory))
	rec(r.Absolute().Inc(ctx, "set", five, 5))
	set(r.SetIf(ctx, "set", five, distkit.Always(), -1, ratelimit.KeepHistory))
	set(r.SetIf(ctx, "set", five, distkit.Always(), ratelimit.MaxCount+1, ratelimit.KeepHistory))
	set(r.SetIf(ctx, "set", five, distkit.Always(), 1, ratelimit.History(7)))
	set(r.SetIf(ctx, "set", ratelimit.Limit{}, distkit.Always(), 1, ratelimit.KeepHistory))
	set(r.SetIf(ctx, "", five, distkit.Always(), 1, ratelimit.KeepHistory))

	// Reset.
	out = append(out, Outcome("reset", r.Reset(ctx, "a")))
	rec(r.Absolute().Inc(ctx, "a", five, 5))
	out = append(out, Outcome("reset", r.Reset(ctx, "never-used")))
	out = append(out, Outcome("reset", r.Reset(ctx, "")))

	// Wait: a request that fits later than the deadline is refused at once.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond) // it fits in about a second
	_, err = r.Absolute().Wait(short, "a", five, 1)
	cancel()
	out = append(out, fmt.Sprint("wait refused:", errors.Is(err, distkit.ErrTimeout)))
	_, err = r.Absolute().Wait(ctx, "a", five, 6)
	out = append(out, Outcome("wait", err))

	// The same key under another period (another bucket size): what it
	// holds is re-dated, never forgotten.
	rec(r.Absolute().Inc(ctx, "geo", five, 3))
	peek(r.Absolute().Peek(ctx, "geo", ratelimit.PerMinute(5)))
	rec(r.Absolute().Inc(ctx, "geo", ratelimit.PerMinute(5), 3))
	rec(r.Absolute().Inc(ctx, "geo", ratelimit.PerMinute(5), 2))
	rec(r.Absolute().Inc(ctx, "geo", five, 1))

	// The script directly: malformed arguments, saturation, corrupt values.
	ks := keyspace.RateLimit(p, "raw")
	call := func(args ...string) {
		v, err := b.EvalScript(ctx, ratelimitscript.Window, ks.List(), args...)
		if err == nil {
			if a, e := v.Int64s(); e == nil && len(a) >= 2 {
				// The server time and bucket indexes vary: show a
				// decision's status, total and whether it has a retry and
				// release time, a sync's total and profile sum, a set's
				// counts.
				var shown []int64
				switch {
				case args[0] == "sync":
					// Which buckets hold the counts depends on when the
					// calls ran: show the total and what the profile sums to.
					sum := int64(0)
					for i := 3; i < len(a); i += 2 {
						sum += a[i]
					}
					shown = []int64{a[0], sum}
				case args[0] == "set" && len(a) == 4:
					shown = a[:3]
				case args[0] == "peek" && len(a) == 4:
					shown = []int64{a[0], min(max(a[1], -1), 1), min(a[3], 1)}
				case len(a) == 5:
					shown = []int64{a[0], a[1], min(max(a[2], -1), 1), min(a[4], 1)}
				}
				out = append(out, Outcome(shown, nil))
				return
			}
		}
		out = append(out, Outcome(v, err))
	}
	// A window far longer than the scenario takes on a loaded machine (with
	// 100 ms, buckets left the window between two steps on one backend and
	// not the other: a disagreement that was only timing).
	const ms, nb, ttl = "60000", "10", "61000"
	for _, n := range []string{"0", "12a", "", "-1", "99999999999999999999", "9007199254740992", "00000000000000001"} {
		call("abs", ms, nb, ttl, "5", n)
	}
	call("abs", ms, nb, ttl, "0", "1")
	call("abs", ms, "0", ttl, "5", "1")
	call("abs", ms, nb, "0", "5", "1")
	call("abs", ms, nb, ttl, "5")
	call("nope", ms, nb, ttl, "5", "1")
	call("peek", ms, nb, "0", "5", "1")
	call("peek", ms, nb, "0", "5", "6")
	call("sync", ms, nb, ttl, "-5", "0", "64")
	call("sync", ms, nb, ttl, "3", "0", "64")   // push 3, describe everything
	call("sync", ms, nb, ttl, "0", "100", "64") // the oldest bucket at least
	call("peek", ms, nb, "0", "5", "3")
	call("sync", ms, nb, ttl, strconv.FormatInt(ratelimitscript.MaxCount, 10), "0", "64")
	call("sync", ms, nb, ttl, "7", "9007199254740990", "64") // saturated: total stays MaxCount
	call("abs", ms, nb, ttl, "9007199254740991", "1")
	call("sup", ms, nb, ttl, "9007199254740991", "1")
	for _, a := range [][]string{
		{"1", "eq", "0", "0", "keep"}, {"0", "bogus", "0", "0", "keep"}, {"0", "eq", "01", "0", "keep"},
		{"0", "eq", "-0", "0", "keep"}, {"0", "eq", "9223372036854775808", "0", "keep"},
		{"0", "eq", "-9223372036854775809", "0", "keep"}, {"0", "always", "0", "-1", "keep"},
		{"0", "always", "0", "1", "forget"}, {"0", "lt", "-9223372036854775808", "1", "keep"},
		{"0", "ge", "-9223372036854775808", "2", "replace"}, {"0", "le", "9223372036854775807", "0", "keep"},
	} {
		call(append([]string{"set", ms, nb, ttl}, a...)...)
	}
	call("set", ms, nb, ttl, "0", "always", "0", "0")
	call("reset")
	call("reset")
	for _, v := range []string{"-1", "1.5", "1e3", "9007199254740992", "x"} {
		corrupt := keyspace.RateLimit(p, "corrupt-"+v)
		hv, herr := b.EvalScript(ctx, hsetScript, []string{corrupt.Counts}, "t", v)
		out = append(out, Outcome(hv, herr))
		v, err := b.EvalScript(ctx, ratelimitscript.Window, corrupt.List(), "abs", ms, nb, ttl, "5", "1")
		out = append(out, Outcome(v, err))
	}
	for _, g := range []string{"x", "0/5", "5", "100/10/1", "100/0"} {
		corrupt := keyspace.RateLimit(p, "corrupt-g-"+g)
		hv, herr := b.EvalScript(ctx, hsetScript, []string{corrupt.Counts}, "g", g)
		out = append(out, Outcome(hv, herr))
		v, err := b.EvalScript(ctx, ratelimitscript.Window, corrupt.List(), "peek", ms, nb, "0", "5", "1")
		out = append(out, Outcome(v, err))
	}
	// A count with a leading zero in the current bucket (bucket 0 forever
	// with B = MaxCount ms): Redis' HINCRBY refuses "05", so both twins
	// must report it as corrupt rather than add to it.
	for _, v := range []string{"05", "00"} {
		lz := keyspace.RateLimit(p, "corrupt-bucket-"+v)
		hv, herr := b.EvalScript(ctx, hsetScript, []string{lz.Counts}, "0", v)
		out = append(out, Outcome(hv, herr))
		v, err := b.EvalScript(ctx, ratelimitscript.Window, lz.List(), "abs", strconv.FormatInt(ratelimitscript.MaxCount, 10), "1", "1100", "5", "1")
		out = append(out, Outcome(v, err))
	}
	wrong := keyspace.RateLimit(p, "wrong")
	b.EvalScript(ctx, testkit.WrongTypeScript, []string{wrong.Counts})
	v, err := b.EvalScript(ctx, ratelimitscript.Window, wrong.List(), "sync", ms, nb, ttl, "1", "0", "64")
	out = append(out, Outcome(v, err))
	v, err = b.EvalScript(ctx, ratelimitscript.Window, wrong.List(), "peek", ms, nb, "0", "5", "1")
	out = append(out, Outcome(v, err))

	// Hybrid against the Redis provider's window.
	h, _ := ratelimit.NewHybrid(b, ratelimit.Options{Prefix: p, Buckets: 10, SyncInterval: time.Hour})
	for range 3 {
		rec(h.Absolute().Inc(ctx, "a", five, 1)) // sees the Redis provider's 5 of 5
	}
	peek(h.Absolute().Peek(ctx, "a", five))
	rec(h.Absolute().Inc(ctx, "h", five, 4))
	rec(h.Absolute().Inc(ctx, "h", five, math.MaxInt64))
	peek(h.Absolute().Peek(ctx, "h", five))
	out = append(out, Outcome(nil, h.Close(ctx))) // pushes 4 to "h"
	rec(r.Absolute().Inc(ctx, "h", five, 2))
	rec(h.Absolute().Inc(ctx, "h", five, 1))
	h2, _ := ratelimit.NewHybrid(b, ratelimit.Options{Prefix: p, Buckets: 10, SyncInterval: time.Hour})
	defer h2.Close(ctx)
	rec(h2.Absolute().Inc(ctx, "h2", five, 2))
	set(h2.SetIf(ctx, "h2", five, distkit.Eq(2), 4, ratelimit.KeepHistory)) // pushes its 2 first
	rec(h2.Absolute().Inc(ctx, "h2", five, 2))
	rec(r.Absolute().Inc(ctx, "h2", five, 1))
	out = append(out, Outcome("reset", h2.Reset(ctx, "h2")))
	rec(h2.Absolute().Inc(ctx, "h2", five, 5))
	peek(r.Absolute().Peek(ctx, "h2", five))
	return out
}}
