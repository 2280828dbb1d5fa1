package ratelimit

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/internal/keyspace"
)

// Defaults of Options.
const (
	DefaultWindow           = 60 * time.Second
	DefaultBucket           = 100 * time.Millisecond
	DefaultSuppressionCache = 100 * time.Millisecond
	DefaultSyncInterval     = 10 * time.Millisecond
)

// FailurePolicy says what a decision is when the backend fails (or, on
// Hybrid, when the key's last sync failed or the key is quarantined). Such
// a decision has Decision.Degraded set to the reason and comes with a nil
// error.
type FailurePolicy int

const (
	// FailDefault picks the provider's default: FailClosed for Redis,
	// FailLocal for Hybrid.
	FailDefault FailurePolicy = iota
	// FailClosed rejects while the backend fails.
	FailClosed
	// FailOpen admits while the backend fails (a request that never fits,
	// n > Limit, excepted); Hybrid counts what it admits and pushes it once
	// the backend is back.
	FailOpen
	// FailLocal (Hybrid only) keeps deciding against the last known global
	// count plus local traffic until the backend answers again: each
	// instance then enforces the capacity on its own.
	FailLocal
)

// String returns the policy's name, e.g. "FailClosed".
func (p FailurePolicy) String() string {
	switch p {
	case FailDefault:
		return "FailDefault"
	case FailClosed:
		return "FailClosed"
	case FailOpen:
		return "FailOpen"
	case FailLocal:
		return "FailLocal"
	}
	return fmt.Sprintf("FailurePolicy(%d)", int(p))
}

// Options configure a provider. The zero value is valid.
type Options struct {
	// Window is the sliding window; default 60 s. A rate r per second
	// allows ⌊r × Window⌋ (in seconds) per window: see the package doc,
	// "Capacity".
	Window time.Duration
	// Bucket is the window's granularity: admissions are counted per
	// bucket, and a bucket leaves the window when its end does, so an
	// admission is counted for between Window and Window + Bucket − 1 ms;
	// default 100 ms. A whole number of milliseconds that divides Window.
	Bucket time.Duration
	// HardLimitFactor (Suppressed): requests are rejected outright above
	// the hard limit ⌊rate × Window × HardLimitFactor⌋; default 1, at
	// least 1.
	HardLimitFactor float64
	// SuppressionCache (Suppressed): how long a key's suppression factor
	// is reused; default 100 ms.
	SuppressionCache time.Duration
	// SyncInterval (Hybrid): how often local increments are pushed and the
	// global counts pulled; default 10 ms.
	SyncInterval time.Duration
	// IdleAfter: local state of a key unused this long is dropped by a
	// background loop, but never while it still holds something the
	// window counts (Local: admissions in the window; Hybrid: increments
	// not yet pushed); default Window.
	IdleAfter time.Duration
	// OnError: see FailurePolicy.
	OnError FailurePolicy
	// Prefix namespaces Redis keys (any byte string of up to
	// distkit.MaxKeyLen bytes); default distkit.DefaultPrefix.
	Prefix string
	// Clock supplies local time: Local's and Hybrid's windows and
	// decisions, suppression caches, idle cleanup; default the system
	// clock. The Redis provider's windows run on the server's clock.
	Clock distkit.Clock
}

type config struct {
	window, bucket   time.Duration
	nb               int64 // buckets per window
	hlf              float64
	suppressionCache time.Duration
	sync             time.Duration
	idle             time.Duration
	onError          FailurePolicy
	prefix           string
	clock            distkit.Clock
	hlfRat           *big.Rat
	limits           *limitCache
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("ratelimit: %w: "+format, append([]any{distkit.ErrInvalidOption}, args...)...)
}

func (o Options) config(defaultPolicy FailurePolicy, allowLocal bool) (config, error) {
	c := config{window: o.Window, bucket: o.Bucket, hlf: o.HardLimitFactor, suppressionCache: o.SuppressionCache,
		sync: o.SyncInterval, idle: o.IdleAfter, onError: o.OnError, clock: o.Clock}
	def := func(v *time.Duration, d time.Duration, name string) error {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			return invalid("%s %v is negative", name, *v)
		}
		return nil
	}
	for _, f := range []struct {
		v    *time.Duration
		d    time.Duration
		name string
	}{{&c.window, DefaultWindow, "Window"}, {&c.bucket, DefaultBucket, "Bucket"},
		{&c.suppressionCache, DefaultSuppressionCache, "SuppressionCache"}, {&c.sync, DefaultSyncInterval, "SyncInterval"}} {
		if err := def(f.v, f.d, f.name); err != nil {
			return config{}, err
		}
	}
	if err := def(&c.idle, c.window, "IdleAfter"); err != nil {
		return config{}, err
	}
	switch {
	case c.bucket < time.Millisecond || c.bucket%time.Millisecond != 0:
		return config{}, invalid("Bucket %v must be a whole number of milliseconds", c.bucket)
	case c.window%c.bucket != 0:
		return config{}, invalid("Bucket %v does not divide Window %v", c.bucket, c.window)
	case c.window > math.MaxInt64-c.bucket: // the keys live Window + Bucket
		return config{}, invalid("Window %v + Bucket %v exceeds the longest time.Duration", c.window, c.bucket)
	case c.sync < time.Millisecond:
		return config{}, invalid("SyncInterval %v is below 1ms", c.sync)
	}
	c.nb = int64(c.window / c.bucket)
	switch {
	case c.hlf == 0:
		c.hlf = 1
	case c.hlf < 1 || math.IsNaN(c.hlf) || math.IsInf(c.hlf, 0):
		return config{}, invalid("HardLimitFactor %v must be at least 1", c.hlf)
	}
	c.hlfRat = decimal(c.hlf)
	c.limits = &limitCache{}
	switch c.onError {
	case FailDefault:
		c.onError = defaultPolicy
	case FailClosed, FailOpen:
	case FailLocal:
		if !allowLocal {
			return config{}, invalid("OnError FailLocal is for the Hybrid provider")
		}
	default:
		return config{}, invalid("unknown OnError %v", c.onError)
	}
	p, err := keyspace.Prefix(o.Prefix)
	if err != nil {
		return config{}, fmt.Errorf("ratelimit: %w", err)
	}
	c.prefix = p
	if c.clock == nil {
		c.clock = distkit.SystemClock{}
	}
	return c, nil
}

// limits are the capacity and the hard limit a rate gives.
type limits struct{ capacity, hard int64 }

// limits returns ⌊rate × Window⌋ and ⌊rate × Window × HardLimitFactor⌋,
// computed exactly from the shortest decimal forms of rate and the factor
// (with the tolerance below),
// or an error wrapping ErrInvalidOption when the capacity is below 1 or
// either is above MaxCount. Results are cached per rate, without locks.
func (c *config) limitsFor(rate float64) (limits, error) {
	bits := math.Float64bits(rate)
	slot := &c.limits.slots[(bits*0x9E3779B97F4A7C15)>>(64-limitSlotsLog2)]
	if e := slot.Load(); e != nil && e.bits == bits {
		return e.l, nil
	}
	r := decimal(rate)
	w := new(big.Rat).Mul(r, big.NewRat(int64(c.window), int64(time.Second))) // rate × window in seconds
	capacity := snapFloor(w)
	hard := snapFloor(w.Mul(w, c.hlfRat))
	switch {
	case capacity.Sign() <= 0:
		return limits{}, invalid("rate %v allows less than one request per %v window", rate, c.window)
	case !hard.IsInt64() || hard.Int64() > MaxCount:
		return limits{}, invalid("rate %v over a %v window (× HardLimitFactor %v) exceeds the largest window count %d", rate, c.window, c.hlf, int64(MaxCount))
	}
	l := limits{capacity: capacity.Int64(), hard: hard.Int64()}
	slot.Store(&limitEntry{bits: bits, l: l})
	return l, nil
}

// tolerance is 10⁻¹⁴: a product that falls short of an integer by less
// than 10⁻¹⁴ of itself counts as that integer, so that rates computed as
// quotients in float64 (1.0/60 per second is 0.016666666666666666) give
// the capacity meant (1 per minute).
var tolerance = big.NewRat(1, 100000000000000)

// snapFloor is ⌊r⌋, or ⌈r⌉ when r falls short of it by less than
// tolerance × r; r ≥ 0. Only a fractional r moves up, and by at most one:
// an integer product stays itself however large (scaling r by 1 + 10⁻¹⁴
// instead would add units to any product above 10¹⁴).
func snapFloor(r *big.Rat) *big.Int {
	f := floor(r)
	if r.IsInt() {
		return f
	}
	c := new(big.Int).Add(f, big.NewInt(1))
	short := new(big.Rat).Sub(new(big.Rat).SetInt(c), r)
	if short.Cmp(new(big.Rat).Mul(r, tolerance)) < 0 {
		return c
	}
	return f
}

// decimal is f's shortest decimal form (what fmt prints) as an exact
// rational.
func decimal(f float64) *big.Rat {
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
	if !ok { // unreachable for finite f
		r = new(big.Rat).SetFloat64(f)
	}
	return r
}

func floor(r *big.Rat) *big.Int { return new(big.Int).Quo(r.Num(), r.Denom()) } // r ≥ 0

const limitSlotsLog2 = 4

// limitCache remembers the limits of recently used rates.
type limitCache struct {
	slots [1 << limitSlotsLog2]atomic.Pointer[limitEntry]
}

type limitEntry struct {
	bits uint64
	l    limits
}

func checkCall(key string, rate float64, n int64) error {
	if err := distkit.ValidateKey("key", key); err != nil {
		return fmt.Errorf("ratelimit: %w", err)
	}
	if !(rate > 0) || math.IsInf(rate, 0) {
		return invalid("rate %v must be a positive finite number", rate)
	}
	if n < 1 {
		return invalid("n %d must be at least 1", n)
	}
	// Any n ≥ 1 is valid: one above the limit never fits (a rejection).
	return nil
}
