package ratelimit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxPeriod is the longest Limit.Period: 366 days.
const MaxPeriod = 366 * 24 * time.Hour

// Limit is a rate as a requirement states it: at most N units in any
// window of length Period, wherever the window starts. The window is the
// period: PerMinute(100) is counted over a sliding minute, PerSecond(10)
// over a sliding second. A Limit is a value: build it with the
// constructors (or the literal Limit{N: 100, Period: time.Minute}) and
// pass it to every call; it is checked on use (Validate).
//
// How many units can pass at once, and the bound in any window:
//
//	PerSecond(n)  n in the first second (all at once if asked); ≤ n in any 1 s window
//	PerMinute(n)  n in the first second (a burst of n); ≤ n in any 60 s window
//	PerHour(n)    n in the first second (a burst of n); ≤ n in any 1 h window
//	Every(d)      1 per d: 1 in the first second when d ≥ 1 s, up to ⌈1 s / d⌉
//	              when d < 1 s; ≤ 1 in any window of length d (no burst)
//	Per(n, d)     n in the first d (all at once if asked); ≤ n in any window of length d
//
// In general at most N·⌈T / Period⌉ units pass in any interval of length
// T. To spread a rate instead of allowing its whole burst at once, shorten
// the period: PerSecond(10) lets 10 through in the first millisecond,
// Every(100 * time.Millisecond) at most one per 100 ms (the same 10 per
// second). For Suppressed, N is the soft limit and the hard limit is
// ⌊N × Options.HardLimitFactor⌋ (see "Capacity" in the package doc).
type Limit struct {
	// N is how many units the window holds: 1 to MaxCount.
	N int64
	// Period is the window: a whole number of milliseconds from 1 ms to
	// MaxPeriod.
	Period time.Duration
}

// PerSecond is n units in any second.
func PerSecond(n int64) Limit { return Limit{N: n, Period: time.Second} }

// PerMinute is n units in any minute.
func PerMinute(n int64) Limit { return Limit{N: n, Period: time.Minute} }

// PerHour is n units in any hour.
func PerHour(n int64) Limit { return Limit{N: n, Period: time.Hour} }

// Every is one unit per d: at most one in any window of length d.
func Every(d time.Duration) Limit { return Limit{N: 1, Period: d} }

// Per is n units in any window of length period, e.g. Per(5, 2*time.Second)
// for "5 every 2 seconds" (2.5 per second, in bursts of up to 5).
func Per(n int64, period time.Duration) Limit { return Limit{N: n, Period: period} }

// Validate reports whether l can be used: an error wrapping
// distkit.ErrInvalidOption that names the problem otherwise (N below 1 or
// above MaxCount, Period not a whole number of milliseconds from 1 ms to
// MaxPeriod).
func (l Limit) Validate() error {
	switch {
	case l.N < 1:
		return invalid("limit %v: N %d must be at least 1 (a limit allowing nothing is not a limit)", l, l.N)
	case l.N > MaxCount:
		return invalid("limit %v: N %d exceeds the largest window count %d", l, l.N, int64(MaxCount))
	case l.Period < time.Millisecond || l.Period%time.Millisecond != 0:
		return invalid("limit %v: Period %v must be a whole number of milliseconds, at least 1ms", l, l.Period)
	case l.Period > MaxPeriod:
		return invalid("limit %v: Period %v exceeds MaxPeriod %v", l, l.Period, MaxPeriod)
	}
	return nil
}

// String is the text form ParseLimit reads back: "10/s", "100/m",
// "1000/h", "5000/d" (24 h), else N/<Go duration> ("1/250ms", "5/2s",
// "3/1m30s").
func (l Limit) String() string {
	unit := ""
	switch l.Period {
	case time.Second:
		unit = "s"
	case time.Minute:
		unit = "m"
	case time.Hour:
		unit = "h"
	case 24 * time.Hour:
		unit = "d"
	default:
		unit = l.Period.String()
	}
	return strconv.FormatInt(l.N, 10) + "/" + unit
}

// ParseLimit reads a Limit from its text form: N/UNIT, where UNIT is s,
// sec, second, m, min, minute, h, hr, hour, d or day (case-insensitive,
// plural allowed), or a Go duration such as 250ms, 2s or 1m30s; "every D"
// is 1/D ("every" in any case, D a Go duration). Spaces around the parts
// are ignored. The result is validated: errors wrap
// distkit.ErrInvalidOption.
func ParseLimit(s string) (Limit, error) {
	t := strings.TrimSpace(s)
	if len(t) > len("every ") && strings.EqualFold(t[:len("every ")], "every ") {
		// The keyword is case-insensitive, the duration a Go duration
		// (case-sensitive: 1M is not one), as after N/.
		d, err := time.ParseDuration(strings.TrimSpace(t[len("every "):]))
		if err != nil {
			return Limit{}, invalid("limit %q: %v", s, err)
		}
		l := Every(d)
		return l, l.Validate()
	}
	num, unit, ok := strings.Cut(t, "/")
	if !ok {
		return Limit{}, invalid("limit %q: want N/UNIT, e.g. 100/m, 10/s or 1/250ms", s)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil {
		return Limit{}, invalid("limit %q: N %q is not an integer", s, strings.TrimSpace(num))
	}
	unit = strings.TrimSpace(unit)
	period, ok := unitNames[strings.ToLower(unit)]
	if !ok {
		if period, err = time.ParseDuration(unit); err != nil {
			return Limit{}, invalid("limit %q: unit %q is neither s, m, h, d nor a duration such as 250ms", s, unit)
		}
	}
	l := Limit{N: n, Period: period}
	return l, l.Validate()
}

var unitNames = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hrs": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
}

// MarshalText returns l.String(), so a Limit can be a flag
// (flag.TextVar), a JSON string or a configuration value.
func (l Limit) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads ParseLimit's form.
func (l *Limit) UnmarshalText(b []byte) error {
	v, err := ParseLimit(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// geometry is how a Limit's window is counted: nb buckets of B ms, nb·B ≥
// the period (equal when Buckets divides it into whole milliseconds).
type geometry struct {
	bucketMs, nb int64
}

func (g geometry) tag() string { return fmt.Sprintf("%d/%d", g.bucketMs, g.nb) }

// ttlMs is how long a written window lives: the window plus a bucket.
func (g geometry) ttlMs() int64 { return (g.nb + 1) * g.bucketMs }

// geometryOf cuts l's period (validated) into at most buckets buckets.
func geometryOf(l Limit, buckets int64) geometry {
	p := l.Period.Milliseconds()
	b := (p + buckets - 1) / buckets
	return geometry{bucketMs: b, nb: (p + b - 1) / b}
}
