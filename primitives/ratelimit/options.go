package ratelimit

import (
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/internal/keyspace"
)

// Defaults and bounds of Options.
const (
	DefaultBuckets          = 100
	MaxBuckets              = 10000
	DefaultSuppressionCache = 100 * time.Millisecond
	DefaultSyncInterval     = 10 * time.Millisecond
	DefaultIdleAfter        = time.Minute
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
	// count plus local traffic until the backend answers again, both
	// leaving the window with their buckets: each instance then enforces
	// the capacity per window on its own.
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
	// Buckets is how many buckets a Limit's period is cut into (each a
	// whole number of milliseconds, at least 1 ms): admissions are counted
	// per bucket, and a bucket leaves the window when its end does, so an
	// admission is counted for between the period and the period plus two
	// buckets; default 100, at most MaxBuckets. Every limiter sharing a
	// prefix should use the same value (a key written with another bucket
	// size is re-dated: see the package doc).
	Buckets int
	// HardLimitFactor (Suppressed): requests are rejected outright above
	// the hard limit ⌊Limit.N × HardLimitFactor⌋; default 1, at least 1.
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
	// not yet pushed); default DefaultIdleAfter (1 minute).
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
	// Logger (Hybrid) receives one line per state change of the
	// background sync: sync_degraded, sync_healthy (README
	// "Observability"); nil: silent.
	Logger *slog.Logger
	// Observer (Hybrid) is told the same state changes; nil: none.
	Observer distkit.Observer
	// MeterProvider records the metrics distkit.ratelimit.* (decisions by
	// result on every provider; Hybrid's syncs; README "Observability");
	// nil: none, at no cost.
	MeterProvider metric.MeterProvider
}

type config struct {
	buckets          int64
	hlf              float64
	suppressionCache time.Duration
	sync             time.Duration
	idle             time.Duration
	onError          FailurePolicy
	prefix           string
	clock            distkit.Clock
	hlfRat           *big.Rat
	limits           *limitCache
	obs              *rlObs // nil: no Logger, Observer or MeterProvider
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("ratelimit: %w: "+format, append([]any{distkit.ErrInvalidOption}, args...)...)
}

func (o Options) config(defaultPolicy FailurePolicy, allowLocal bool) (config, error) {
	c := config{buckets: int64(o.Buckets), hlf: o.HardLimitFactor, suppressionCache: o.SuppressionCache,
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
	}{{&c.suppressionCache, DefaultSuppressionCache, "SuppressionCache"}, {&c.sync, DefaultSyncInterval, "SyncInterval"},
		{&c.idle, DefaultIdleAfter, "IdleAfter"}} {
		if err := def(f.v, f.d, f.name); err != nil {
			return config{}, err
		}
	}
	switch {
	case c.buckets == 0:
		c.buckets = DefaultBuckets
	case c.buckets < 0 || c.buckets > MaxBuckets:
		return config{}, invalid("Buckets %d must be between 1 and %d", c.buckets, MaxBuckets)
	}
	if c.sync < time.Millisecond {
		return config{}, invalid("SyncInterval %v is below 1ms", c.sync)
	}
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

// limits are the capacity and the hard limit of a Limit.
type limits struct{ capacity, hard int64 }

// limitsFor validates l and returns N and, for Suppressed (sup),
// ⌊N × HardLimitFactor⌋, computed exactly from the factor's shortest
// decimal form (snapped as snapFloor says), or an error wrapping
// ErrInvalidOption when l is invalid or the hard limit is above MaxCount.
// Hard limits are cached per N, without locks.
func (c *config) limitsFor(l Limit, sup bool) (limits, error) {
	if err := l.Validate(); err != nil {
		return limits{}, err
	}
	if !sup || c.hlf == 1 {
		return limits{capacity: l.N, hard: l.N}, nil
	}
	slot := &c.limits.slots[(uint64(l.N)*0x9E3779B97F4A7C15)>>(64-limitSlotsLog2)]
	if e := slot.Load(); e != nil && e.n == l.N {
		return e.l, nil
	}
	w := new(big.Rat).Mul(new(big.Rat).SetInt64(l.N), c.hlfRat)
	hard := snapFloor(w)
	if !hard.IsInt64() || hard.Int64() > MaxCount {
		return limits{}, invalid("limit %v × HardLimitFactor %v exceeds the largest window count %d", l, c.hlf, int64(MaxCount))
	}
	lim := limits{capacity: l.N, hard: hard.Int64()}
	slot.Store(&limitEntry{n: l.N, l: lim})
	return lim, nil
}

// tolerance is 10⁻¹⁴: a product that falls short of an integer by less
// than 10⁻¹⁴ of itself counts as that integer, so that a factor computed
// as a quotient in float64 (4.0/3 is 1.3333333333333333) gives the hard
// limit meant (⌊3 × 4/3⌋ = 4).
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

// limitCache remembers the hard limits of recently used Ns.
type limitCache struct {
	slots [1 << limitSlotsLog2]atomic.Pointer[limitEntry]
}

type limitEntry struct {
	n int64
	l limits
}
