package ratelimit

import (
	"fmt"
	"math"
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

// FailurePolicy says what a decision is when the backend fails.
type FailurePolicy int

const (
	// FailDefault picks the provider's default: FailClosed for Redis,
	// FailLocal for Hybrid.
	FailDefault FailurePolicy = iota
	// FailClosed rejects while the backend fails.
	FailClosed
	// FailOpen admits while the backend fails.
	FailOpen
	// FailLocal (Hybrid only) keeps deciding against the last known global
	// count plus local traffic until the backend answers again.
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
	// allows r × Window (in seconds) per window.
	Window time.Duration
	// Bucket is the window's granularity: admissions are counted per
	// bucket, and a bucket leaves the window whole; default 100 ms. It
	// must divide Window.
	Bucket time.Duration
	// HardLimitFactor (Suppressed): requests are rejected outright above
	// HardLimitFactor × capacity; default 1, at least 1.
	HardLimitFactor float64
	// SuppressionCache (Suppressed): how long a key's suppression factor
	// is reused; default 100 ms.
	SuppressionCache time.Duration
	// SyncInterval (Hybrid): how often local increments are pushed and the
	// global counts pulled; default 10 ms.
	SyncInterval time.Duration
	// IdleAfter: local state of a key unused this long is dropped by a
	// background loop; default Window.
	IdleAfter time.Duration
	// OnError: see FailurePolicy.
	OnError FailurePolicy
	// Prefix namespaces Redis keys (any byte string of up to
	// distkit.MaxKeyLen bytes); default distkit.DefaultPrefix.
	Prefix string
	// Clock (Local) supplies time; default the system clock.
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

// capacity is rate × window.
func (c config) capacity(rate float64) float64 { return rate * c.window.Seconds() }

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
	return nil
}
