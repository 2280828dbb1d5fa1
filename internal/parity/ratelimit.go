package parity

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

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

// renderDecision renders what does not depend on where in a bucket the
// clock is; RetryAfter as a range.
func renderDecision(d ratelimit.Decision, err error) string {
	retry := "0"
	switch {
	case d.RetryAfter < 0:
		retry = "negative"
	case d.RetryAfter > 0 && d.RetryAfter < 1100*time.Millisecond:
		retry = "in-window"
	case d.RetryAfter > 0:
		retry = "beyond"
	}
	allowed := fmt.Sprint(d.Allowed)
	if d.Suppression > 0 && d.Suppression < 1 {
		allowed = "random"
	}
	return Outcome(fmt.Sprintf("allowed=%s limit=%d remaining=%d retry=%s suppression=%.4f degraded=%v",
		allowed, d.Limit, d.Remaining, retry, d.Suppression, d.Degraded != nil), err)
}

// rateLimitScenario drives the window script in every mode, through the
// providers and directly: capacities (fractional included), huge and
// malformed amounts, saturation, corrupt stored values, the sync mode's
// bucket profile, and Hybrid against the Redis provider's window.
var rateLimitScenario = Scenario{Name: "RateLimit", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	var out []string
	rec := func(d ratelimit.Decision, err error) { out = append(out, renderDecision(d, err)) }
	opts := ratelimit.Options{Prefix: p, Window: time.Second, Bucket: 100 * time.Millisecond, HardLimitFactor: 2, SuppressionCache: time.Nanosecond}
	r, err := ratelimit.NewRedis(b, opts)
	if err != nil {
		return []string{Outcome(nil, err)}
	}
	defer r.Close(ctx)
	for _, n := range []int64{2, 2, 1, 1, 2} { // reaches capacity (5) exactly, then goes over
		rec(r.Absolute().Inc(ctx, "a", 5, n))
	}
	huge := []int64{math.MaxInt64, math.MaxInt64 - 1, 1e17, 1 << 53, 1<<53 - 1, 11, 10}
	for _, n := range huge {
		rec(r.Absolute().Inc(ctx, "a", 5, n))
		rec(r.Suppressed().Inc(ctx, "hs", 5, n))
	}
	rec(r.Absolute().Inc(ctx, "f", 2.5, 2)) // capacity ⌊2.5⌋ = 2
	rec(r.Absolute().Inc(ctx, "f", 2.5, 1))
	for range 12 {
		rec(r.Suppressed().Inc(ctx, "s", 5, 1))
	}
	rec(r.Absolute().Inc(ctx, "s", 5, 1)) // strategies share the window
	rec(r.Absolute().Inc(ctx, "bad-rate", 0.5, 1))
	rec(r.Absolute().Inc(ctx, "bad-rate", 1e16, 1))
	minute, _ := ratelimit.NewRedis(b, ratelimit.Options{Prefix: p})
	defer minute.Close(ctx)
	rec(minute.Absolute().Inc(ctx, "f205", 2.05, 122)) // 2.05 × 60 = 123
	rec(minute.Absolute().Inc(ctx, "f205", 2.05, 1))
	rec(minute.Absolute().Inc(ctx, "f205", 2.05, 1))

	// The script directly: malformed arguments, saturation, corrupt values.
	ks := keyspace.RateLimit(p, "raw")
	call := func(args ...string) {
		v, err := b.EvalScript(ctx, ratelimitscript.Window, ks.List(), args...)
		if err == nil {
			if a, e := v.Int64s(); e == nil && len(a) >= 2 {
				// The server time and bucket indexes vary: show a
				// decision's status, total and whether it has a retry
				// time, a sync's total and profile counts.
				var shown []int64
				if args[0] == "sync" {
					shown = []int64{a[0]}
					for i := 3; i < len(a); i += 2 {
						shown = append(shown, a[i])
					}
				} else if len(a) == 4 {
					shown = []int64{a[0], a[1], min(max(a[2], -1), 1)}
				}
				out = append(out, Outcome(shown, nil))
				return
			}
		}
		out = append(out, Outcome(v, err))
	}
	ms := "100"
	for _, n := range []string{"0", "12a", "", "-1", "99999999999999999999", "9007199254740992", "00000000000000001"} {
		call("abs", ms, "10", "5", n, "1100")
	}
	call("abs", ms, "10", "0", "1", "1100")
	call("abs", ms, "0", "5", "1", "1100")
	call("nope", ms, "10", "5", "1", "1100")
	call("sync", ms, "10", "-5", "1100", "0", "64")
	call("sync", ms, "10", "3", "1100", "0", "64") // push 3, describe everything
	call("sync", ms, "10", strconv.FormatInt(ratelimitscript.MaxCount, 10), "1100", "0", "64")
	call("sync", ms, "10", "7", "1100", "9007199254740990", "64") // saturated: total stays MaxCount
	call("abs", ms, "10", "9007199254740991", "1", "1100")
	call("sup", ms, "10", "9007199254740991", "1", "1100")
	for _, v := range []string{"-1", "1.5", "1e3", "9007199254740992", "x"} {
		corrupt := keyspace.RateLimit(p, "corrupt-"+v)
		hv, herr := b.EvalScript(ctx, hsetScript, []string{corrupt.Counts}, "t", v)
		out = append(out, Outcome(hv, herr))
		v, err := b.EvalScript(ctx, ratelimitscript.Window, corrupt.List(), "abs", ms, "10", "5", "1", "1100")
		out = append(out, Outcome(v, err))
	}
	// A count with a leading zero in the current bucket (bucket 0 forever
	// with B = MaxCount ms): Redis' HINCRBY refuses "05", so both twins
	// must report it as corrupt rather than add to it.
	for _, v := range []string{"05", "00"} {
		lz := keyspace.RateLimit(p, "corrupt-bucket-"+v)
		hv, herr := b.EvalScript(ctx, hsetScript, []string{lz.Counts}, "0", v)
		out = append(out, Outcome(hv, herr))
		v, err := b.EvalScript(ctx, ratelimitscript.Window, lz.List(), "abs", strconv.FormatInt(ratelimitscript.MaxCount, 10), "1", "5", "1", "1100")
		out = append(out, Outcome(v, err))
	}
	wrong := keyspace.RateLimit(p, "wrong")
	b.EvalScript(ctx, testkit.WrongTypeScript, []string{wrong.Counts})
	v, err := b.EvalScript(ctx, ratelimitscript.Window, wrong.List(), "sync", ms, "10", "1", "1100", "0", "64")
	out = append(out, Outcome(v, err))

	// Hybrid against the Redis provider's window.
	h, _ := ratelimit.NewHybrid(b, ratelimit.Options{Prefix: p, Window: time.Second, SyncInterval: time.Hour})
	for range 3 {
		rec(h.Absolute().Inc(ctx, "a", 5, 1)) // sees the Redis provider's 5 of 5
	}
	rec(h.Absolute().Inc(ctx, "h", 5, 4))
	rec(h.Absolute().Inc(ctx, "h", 5, math.MaxInt64))
	out = append(out, Outcome(nil, h.Close(ctx))) // pushes 4 to "h"
	rec(r.Absolute().Inc(ctx, "h", 5, 2))
	rec(h.Absolute().Inc(ctx, "h", 5, 1))
	return out
}}
