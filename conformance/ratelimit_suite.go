package conformance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

var testkitWrongType = testkit.WrongTypeScript

func runRateLimit(t *testing.T, newHarness NewHarness) {
	t.Run("RedisAbsolute", func(t *testing.T) { testRLAbsolute(t, newHarness(t)) })
	t.Run("RedisSuppressed", func(t *testing.T) { testRLSuppressed(t, newHarness(t)) })
	t.Run("KeysIndependent", func(t *testing.T) { testRLKeys(t, newHarness(t)) })
	t.Run("FailurePolicies", func(t *testing.T) { testRLFailure(t, newHarness(t)) })
	t.Run("HybridSeesOtherInstances", func(t *testing.T) { testHybridGlobal(t, newHarness(t)) })
	t.Run("HybridClosePushes", func(t *testing.T) { testHybridClose(t, newHarness(t)) })
	t.Run("BoundUnderConcurrency", func(t *testing.T) { testRLBound(t, newHarness(t)) })
	t.Run("HugeN", func(t *testing.T) { testRLHugeN(t, newHarness(t)) })
	t.Run("HybridBadKeyIsolated", func(t *testing.T) { testHybridBadKey(t, newHarness(t)) })
	t.Run("HybridCancelledCallerContext", func(t *testing.T) { testHybridCancelled(t, newHarness(t)) })
	t.Run("HybridIdleKeysCostNoIO", func(t *testing.T) { testHybridIdleIO(t, newHarness(t)) })
	t.Run("ExactWindow", func(t *testing.T) { testRLExactWindow(t, newHarness(t)) })
	t.Run("CapacityAndRemaining", func(t *testing.T) { testRLCapacity(t, newHarness(t)) })
	t.Run("Closed", func(t *testing.T) { testRLClosed(t, newHarness(t)) })
	t.Run("HybridRetryAfter", func(t *testing.T) { testHybridRetryAfter(t, newHarness(t)) })
}

func newRedisRL(t *testing.T, b backend.Backend, opts ratelimit.Options) *ratelimit.Redis {
	t.Helper()
	r, err := ratelimit.NewRedis(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

func newHybridRL(t *testing.T, b backend.Backend, opts ratelimit.Options) *ratelimit.Hybrid {
	t.Helper()
	r, err := ratelimit.NewHybrid(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

func testRLAbsolute(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	r := newRedisRL(t, open(t, h), ratelimit.Options{Prefix: p, Window: time.Second, Bucket: 100 * time.Millisecond})
	a := r.Absolute()
	for i := range 10 {
		d, err := a.Inc(ctx, "k", 10, 1)
		if err != nil || !d.Allowed || d.Remaining != int64(9-i) {
			t.Fatalf("request %d within capacity 10: %+v, %v", i, d, err)
		}
	}
	d, err := a.Inc(ctx, "k", 10, 1)
	// A bucket leaves when its end is a window old: within W + B − 1 ms.
	if err != nil || d.Allowed || d.Remaining != 0 || d.Limit != 10 || d.RetryAfter <= 0 || d.RetryAfter > 1099*time.Millisecond {
		t.Fatalf("request over capacity: %+v, %v; want rejected with 0 < RetryAfter < 1.1s", d, err)
	}
	h.Wait(t, d.RetryAfter+50*time.Millisecond)
	if ok, err := a.Allow(ctx, "k", 10); !ok || err != nil {
		t.Fatalf("after RetryAfter: %v, %v", ok, err)
	}
	for _, s := range []struct {
		n  int64
		ok bool
	}{{4, true}, {4, true}, {4, false}, {2, true}, {1, false}} {
		d, err := a.Inc(ctx, "n", 10, s.n)
		if err != nil || d.Allowed != s.ok {
			t.Fatalf("Inc n=%d: %+v, %v; want allowed %v", s.n, d, err, s.ok)
		}
	}
	r2 := newRedisRL(t, open(t, h), ratelimit.Options{Prefix: p, Window: 2 * time.Second, Bucket: 100 * time.Millisecond})
	admitted := 0
	for range 8 {
		if ok, _ := r2.Absolute().Allow(ctx, "frac", 2.5); ok { // 2.5/s × 2 s = 5
			admitted++
		}
	}
	if admitted != 5 {
		t.Fatalf("fractional rate: admitted %d, want 5", admitted)
	}
}

func testRLSuppressed(t *testing.T, h Harness) {
	ctx := context.Background()
	r := newRedisRL(t, open(t, h), ratelimit.Options{Prefix: prefix(t), Window: time.Second, Bucket: 100 * time.Millisecond,
		HardLimitFactor: 2, SuppressionCache: time.Nanosecond})
	s := r.Suppressed()
	for i := range 10 {
		d, err := s.Inc(ctx, "k", 10, 1)
		if err != nil || !d.Allowed || d.Suppression != 0 {
			t.Fatalf("offer %d below the rate: %+v, %v", i, d, err)
		}
	}
	var last ratelimit.Decision
	for range 10 { // offered 11..20: between soft and hard limit
		d, err := s.Inc(ctx, "k", 10, 1)
		if err != nil || d.Suppression <= 0 || d.Suppression >= 1 {
			t.Fatalf("between the limits: %+v, %v", d, err)
		}
		last = d
	}
	if want := 1 - 10.0/20; last.Suppression < want-1e-9 || last.Suppression > want+1e-9 {
		t.Fatalf("suppression at 2× offered: %v, want %v", last.Suppression, want)
	}
	for range 5 {
		d, err := s.Inc(ctx, "k", 10, 1)
		if err != nil || d.Allowed || d.Suppression != 1 {
			t.Fatalf("above the hard limit: %+v, %v", d, err)
		}
	}
}

func testRLKeys(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	b := open(t, h)
	r := newRedisRL(t, b, ratelimit.Options{Prefix: p, Window: time.Second})
	other := newRedisRL(t, b, ratelimit.Options{Prefix: p + "-other", Window: time.Second})
	for _, key := range []string{"a", "b"} {
		if d, _ := r.Absolute().Inc(ctx, key, 2, 2); !d.Allowed {
			t.Fatalf("key %s: %+v", key, d)
		}
	}
	if ok, _ := r.Absolute().Allow(ctx, "a", 2); ok {
		t.Fatal("key a over capacity admitted")
	}
	if ok, _ := other.Absolute().Allow(ctx, "a", 2); !ok {
		t.Fatal("another prefix shares key a's window")
	}
	if _, err := r.Absolute().Allow(ctx, "", 1); !errors.Is(err, distkit.ErrInvalidKey) {
		t.Fatalf("bad key: %v", err)
	}
	if _, err := ratelimit.NewRedis(b, ratelimit.Options{OnError: ratelimit.FailLocal}); !errors.Is(err, distkit.ErrInvalidOption) {
		t.Fatalf("FailLocal on Redis: %v", err)
	}
}

// testRLFailure: with the backend gone, each policy decides what it says,
// the decision says it was degraded and why, and the call's error stays nil.
func testRLFailure(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	opts := ratelimit.Options{Prefix: p, Window: time.Second}
	down := h.NewBackend(t)
	closed := newRedisRL(t, down, opts)
	openRL := newRedisRL(t, down, ratelimit.Options{Prefix: p, Window: time.Second, OnError: ratelimit.FailOpen})
	// Hybrid: learn the key while the backend is up, then lose it.
	hyb := newHybridRL(t, down, ratelimit.Options{Prefix: p, Window: time.Second, SyncInterval: 5 * time.Millisecond})
	hybClosed := newHybridRL(t, down, ratelimit.Options{Prefix: p, Window: time.Second, SyncInterval: 5 * time.Millisecond, OnError: ratelimit.FailClosed})
	hyb.Absolute().Allow(ctx, "k", 100)
	hybClosed.Absolute().Allow(ctx, "k", 100)
	down.Close() // a cut connection: every call now fails, not applied
	degraded := func(what string, d ratelimit.Decision, err error, allowed bool) {
		t.Helper()
		if err != nil || d.Allowed != allowed || !errors.Is(d.Degraded, distkit.ErrNotApplied) {
			t.Fatalf("%s: %+v, %v; want allowed=%v, degraded by the backend error, no error", what, d, err, allowed)
		}
	}
	d, err := closed.Absolute().Inc(ctx, "k", 100, 1)
	degraded("FailClosed", d, err, false)
	d, err = openRL.Suppressed().Inc(ctx, "k", 100, 1)
	degraded("FailOpen", d, err, true)
	d, err = openRL.Absolute().Inc(ctx, "k", 100, 101)
	degraded("FailOpen, a request that never fits", d, err, false)
	eventually(t, 2*time.Second, "Hybrid notices the failed sync", func() bool {
		d, _ := hyb.Absolute().Inc(ctx, "k", 100, 1)
		return d.Degraded != nil
	})
	d, err = hyb.Absolute().Inc(ctx, "k", 100, 1)
	degraded("Hybrid FailLocal", d, err, true)
	d, err = hyb.Absolute().Inc(ctx, "k", 100, 100)
	degraded("Hybrid FailLocal over capacity", d, err, false)
	eventually(t, 2*time.Second, "Hybrid FailClosed rejects", func() bool {
		d, err := hybClosed.Absolute().Inc(ctx, "k", 100, 1)
		return !d.Allowed && err == nil && errors.Is(d.Degraded, distkit.ErrNotApplied)
	})
}

func testHybridGlobal(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	opts := ratelimit.Options{Prefix: p, Window: 2 * time.Second, SyncInterval: time.Hour} // syncs only when told
	a := newHybridRL(t, open(t, h), opts)
	b := newHybridRL(t, open(t, h), opts)
	for i := range 10 {
		if ok, err := a.Absolute().Allow(ctx, "k", 5); !ok || err != nil { // capacity 10
			t.Fatalf("A request %d: %v, %v", i, ok, err)
		}
	}
	if ok, _ := a.Absolute().Allow(ctx, "k", 5); ok {
		t.Fatal("A admitted past capacity locally")
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.Absolute().Allow(ctx, "k", 5); ok { // B's first use reads the global count
		t.Fatal("B admitted although A used the whole capacity")
	}
	// The Redis provider sees the same window.
	r := newRedisRL(t, open(t, h), opts)
	if ok, _ := r.Absolute().Allow(ctx, "k", 5); ok {
		t.Fatal("the Redis provider does not see Hybrid's pushes")
	}
}

func testHybridClose(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	opts := ratelimit.Options{Prefix: p, Window: 2 * time.Second, SyncInterval: time.Hour}
	hy, err := ratelimit.NewHybrid(open(t, h), opts)
	if err != nil {
		t.Fatal(err)
	}
	for range 7 {
		hy.Absolute().Allow(ctx, "k", 5)
	}
	if err := hy.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r := newRedisRL(t, open(t, h), opts)
	if d, _ := r.Absolute().Inc(ctx, "k", 5, 4); d.Allowed || d.Remaining != 3 {
		t.Fatalf("after Hybrid's Close: %+v; want its 7 counted (remaining 3)", d)
	}
}

// testRLBound: 3 clients × 4 goroutines hammer one key; every admitted
// decision records the time it was made (server time for Redis). Every
// window of length W, wherever it starts, holds at most the capacity
// (Redis), plus the documented Hybrid overshoot: what the other instances
// admit within 2 × (SyncInterval + a sync round trip).
func testRLBound(t *testing.T, h Harness) {
	if testkit.IsFakeTime(h) {
		t.Skip("needs server time that moves by itself")
	}
	const (
		window = 500 * time.Millisecond
		bucket = 50 * time.Millisecond
		rate   = 200.0 // capacity 100 per window
		run    = 1500 * time.Millisecond
	)
	for _, kind := range []string{"redis", "hybrid"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			p := prefix(t)
			opts := ratelimit.Options{Prefix: p, Window: window, Bucket: bucket, SyncInterval: 10 * time.Millisecond}
			var mu sync.Mutex
			var at []time.Time
			perInstance := make([][]time.Time, 3)
			var stop atomic.Bool
			var wg sync.WaitGroup
			for i := range 3 {
				var abs *ratelimit.Absolute
				if kind == "redis" {
					abs = newRedisRL(t, open(t, h), opts).Absolute()
				} else {
					abs = newHybridRL(t, open(t, h), opts).Absolute()
				}
				for range 4 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for !stop.Load() {
							d, err := abs.Inc(ctx, "k", rate, 1)
							if err != nil {
								t.Error(err)
								return
							}
							if d.Allowed {
								mu.Lock()
								at = append(at, d.At)
								perInstance[i] = append(perInstance[i], d.At)
								mu.Unlock()
							} else {
								time.Sleep(time.Millisecond)
							}
						}
					}()
				}
			}
			time.Sleep(run)
			stop.Store(true)
			wg.Wait()
			capacity := int(rate * window.Seconds())
			slack := 0
			if kind == "hybrid" {
				// Documented: the other instances' admissions within
				// 2 × (SyncInterval + a sync round trip) (generously 100 ms
				// under the race detector on 2 cores).
				per := 0
				for _, ts := range perInstance {
					per = max(per, testkit.MaxInWindow(ts, 100*time.Millisecond))
				}
				slack = 2 * per
			}
			worst := testkit.MaxInWindow(at, window)
			t.Logf("%s: %d admitted in %v, worst window %d, capacity %d, allowed slack %d", kind, len(at), run, worst, capacity, slack)
			if worst > capacity+slack {
				t.Fatalf("a %v window admitted %d, above capacity %d + slack %d", window, worst, capacity, slack)
			}
			if len(at) < capacity {
				t.Fatalf("only %d admitted in %v: the limiter is stricter than its rate", len(at), run)
			}
		})
	}
}

// testRLHugeN: amounts beyond what a window can ever hold are rejected,
// never wrapped around, never handed to the server as inexact numbers, and
// never an error; the window still admits exactly its capacity.
func testRLHugeN(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	b := open(t, h)
	opts := ratelimit.Options{Prefix: p, Window: time.Second, SyncInterval: time.Hour}
	r := newRedisRL(t, b, opts)
	hy := newHybridRL(t, b, opts)
	for name, s := range map[string]struct {
		abs *ratelimit.Absolute
		sup *ratelimit.Suppressed
	}{"redis": {r.Absolute(), r.Suppressed()}, "hybrid": {hy.Absolute(), hy.Suppressed()}} {
		for _, n := range []int64{math.MaxInt64, math.MaxInt64 - 1, 1e17, 1<<53 + 1, 11} {
			for strat, inc := range map[string]func() (ratelimit.Decision, error){
				"abs": func() (ratelimit.Decision, error) { return s.abs.Inc(ctx, name+"-abs", 10, n) },
				"sup": func() (ratelimit.Decision, error) { return s.sup.Inc(ctx, name+"-sup", 10, n) },
			} {
				d, err := inc()
				if err != nil || d.Allowed || d.Degraded != nil {
					t.Fatalf("%s %s Inc(n=%d) with capacity 10: %+v, %v; want rejected without an error", name, strat, n, d, err)
				}
			}
		}
		if err := hy.Sync(ctx); err != nil {
			t.Fatalf("hybrid sync after huge requests: %v", err)
		}
		admitted := 0
		for range 20 {
			if ok, err := s.abs.Allow(ctx, name+"-abs", 10); err != nil {
				t.Fatal(err)
			} else if ok {
				admitted++
			}
		}
		if admitted != 10 {
			t.Fatalf("%s: %d admitted after the huge requests, want the capacity 10", name, admitted)
		}
	}
}

// testHybridBadKey: a key the server rejects (WRONGTYPE) is reported on
// that key only; every other key keeps deciding normally.
func testHybridBadKey(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	b := open(t, h)
	hy := newHybridRL(t, b, ratelimit.Options{Prefix: p, Window: time.Second, SyncInterval: 5 * time.Millisecond})
	if _, err := b.EvalScript(ctx, testkitWrongType, []string{keyspace.RateLimit(p, "bad").Counts}); err == nil {
		t.Fatal("WRONGTYPE script succeeded")
	}
	var bad ratelimit.Decision
	for i := range 20 {
		d, err := hy.Absolute().Inc(ctx, "bad", 100, 1)
		if err != nil {
			t.Fatalf("bad key: the server's rejection became the call's error: %v", err)
		}
		bad = d
		if d, err := hy.Absolute().Inc(ctx, "good", 100, 1); err != nil || !d.Allowed || d.Degraded != nil {
			t.Fatalf("good key, decision %d next to a bad key: %+v, %v", i, d, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var se *backend.ScriptError
	if !errors.As(bad.Degraded, &se) || !bad.Allowed { // FailLocal: decided locally, reported on the key
		t.Fatalf("bad key: %+v; want a local decision degraded by the server's script error", bad)
	}
}

// testHybridCancelled: a caller whose context is already cancelled gets
// its own error; other keys' decisions are unaffected.
func testHybridCancelled(t *testing.T, h Harness) {
	ctx := context.Background()
	hy := newHybridRL(t, open(t, h), ratelimit.Options{Prefix: prefix(t), Window: time.Second, SyncInterval: time.Hour})
	if ok, err := hy.Absolute().Allow(ctx, "a", 100); !ok || err != nil {
		t.Fatalf("key a: %v, %v", ok, err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := hy.Absolute().Allow(cancelled, "b", 100); !errors.Is(err, context.Canceled) {
		t.Fatalf("a fresh key with a cancelled context: %v; want the caller's context error", err)
	}
	if d, err := hy.Absolute().Inc(ctx, "a", 100, 1); err != nil || !d.Allowed || d.Degraded != nil {
		t.Fatalf("key a after another caller's cancelled context: %+v, %v", d, err)
	}
}

// countingBackend counts the script calls it passes on.
type countingBackend struct {
	backend.Backend
	calls atomic.Int64
}

func (c *countingBackend) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	c.calls.Add(1)
	return c.Backend.EvalScript(ctx, s, keys, args...)
}

func (c *countingBackend) EvalScripts(ctx context.Context, calls []backend.Call) []backend.Result {
	c.calls.Add(int64(len(calls)))
	return c.Backend.EvalScripts(ctx, calls)
}

// testHybridIdleIO: keys nobody uses cost no I/O: once their increments
// are pushed, the sync loop leaves them alone.
func testHybridIdleIO(t *testing.T, h Harness) {
	ctx := context.Background()
	cb := &countingBackend{Backend: open(t, h)}
	hy := newHybridRL(t, cb, ratelimit.Options{Prefix: prefix(t), Window: 10 * time.Second, SyncInterval: 5 * time.Millisecond})
	for i := range 50 {
		hy.Absolute().Allow(ctx, fmt.Sprint("k", i), 100)
	}
	time.Sleep(100 * time.Millisecond) // pushed by now
	before := cb.calls.Load()
	time.Sleep(200 * time.Millisecond) // 40 sync intervals with nothing to do
	if n := cb.calls.Load() - before; n > 0 {
		t.Fatalf("%d scripts ran for 50 idle keys in 40 sync intervals", n)
	}
}

// testRLExactWindow: bursts that fill the window at once, right at the end
// of a bucket; every window of length W (server time of the admitting
// script, any start) holds at most the capacity.
func testRLExactWindow(t *testing.T, h Harness) {
	ctx := context.Background()
	const window, bucket = 400 * time.Millisecond, 40 * time.Millisecond
	r := newRedisRL(t, open(t, h), ratelimit.Options{Prefix: prefix(t), Window: window, Bucket: bucket})
	var at []time.Time
	fake := testkit.IsFakeTime(h)
	start := time.Now()
	for step := 0; step < 1200; step++ {
		if !fake && time.Since(start) > 1200*time.Millisecond {
			break
		}
		for range 12 { // capacity 10: burst until rejected
			d, err := r.Absolute().Inc(ctx, "k", 25, 1)
			if err != nil {
				t.Fatal(err)
			}
			if !d.Allowed {
				break
			}
			at = append(at, d.At)
		}
		if fake {
			h.Wait(t, time.Millisecond)
		} else {
			time.Sleep(time.Millisecond)
		}
	}
	worst := testkit.MaxInWindow(at, window)
	t.Logf("%d admitted, worst %v window (any start) %d, capacity 10", len(at), window, worst)
	if worst > 10 {
		t.Fatalf("a %v window holds %d admissions, capacity 10", window, worst)
	}
	if len(at) < 20 {
		t.Fatalf("only %d admitted over 3 windows", len(at))
	}
}

// testRLCapacity: 2.05/s over a minute is 123 (2.05 × 60 is
// 122.99999999999999 in float64) for Redis and Hybrid alike, and Remaining
// always says what the next request gets.
func testRLCapacity(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	b := open(t, h)
	r := newRedisRL(t, b, ratelimit.Options{Prefix: p})
	hy := newHybridRL(t, b, ratelimit.Options{Prefix: p + "-h", SyncInterval: time.Hour})
	for name, a := range map[string]*ratelimit.Absolute{"redis": r.Absolute(), "hybrid": hy.Absolute()} {
		admitted := 0
		var last ratelimit.Decision
		for i := range 126 {
			d, err := a.Inc(ctx, "k", 2.05, 1)
			if err != nil {
				t.Fatal(err)
			}
			if i > 0 && (last.Remaining > 0) != d.Allowed {
				t.Fatalf("%s: Remaining %d, then the next request allowed=%v", name, last.Remaining, d.Allowed)
			}
			if d.Allowed {
				admitted++
			}
			last = d
		}
		if admitted != 123 || last.Limit != 123 {
			t.Fatalf("%s: 2.05/s over 60 s admitted %d (limit %d), want 123", name, admitted, last.Limit)
		}
	}
	for _, a := range []*ratelimit.Absolute{r.Absolute(), hy.Absolute()} {
		if _, err := a.Inc(ctx, "k", 0.01, 1); !errors.Is(err, distkit.ErrInvalidOption) {
			t.Fatalf("0.01/s over 60 s (0.6 per window): %v; want ErrInvalidOption", err)
		}
		if _, err := a.Inc(ctx, "one", 1.0/60, 1); err != nil {
			t.Fatalf("1/60 per second over 60 s: %v", err)
		}
	}
}

// testRLClosed: a closed limiter answers ErrClosed, and a Hybrid pushed
// everything it admitted before.
func testRLClosed(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	b := open(t, h)
	r, _ := ratelimit.NewRedis(b, ratelimit.Options{Prefix: p})
	hy, _ := ratelimit.NewHybrid(b, ratelimit.Options{Prefix: p, SyncInterval: time.Hour})
	if ok, err := hy.Absolute().Allow(ctx, "k", 10); !ok || err != nil {
		t.Fatalf("before Close: %v, %v", ok, err)
	}
	for name, c := range map[string]interface {
		Absolute() *ratelimit.Absolute
		Suppressed() *ratelimit.Suppressed
		Close(context.Context) error
	}{"redis": r, "hybrid": hy} {
		if err := c.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if ok, err := c.Absolute().Allow(ctx, "k", 10); ok || !errors.Is(err, distkit.ErrClosed) {
			t.Fatalf("%s after Close: %v, %v; want ErrClosed", name, ok, err)
		}
		if ok, err := c.Suppressed().Allow(ctx, "k", 10); ok || !errors.Is(err, distkit.ErrClosed) {
			t.Fatalf("%s Suppressed after Close: %v, %v; want ErrClosed", name, ok, err)
		}
	}
	r2 := newRedisRL(t, b, ratelimit.Options{Prefix: p})
	if d, _ := r2.Absolute().Inc(ctx, "k", 10, 1); d.Remaining != 598 {
		t.Fatalf("after Hybrid's Close: %+v; want its one admission counted", d)
	}
}

// testHybridRetryAfter: a Hybrid rejection says when to retry, from the
// oldest buckets it saw at its last sync.
func testHybridRetryAfter(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	b := open(t, h)
	opts := ratelimit.Options{Prefix: p, Window: time.Second, Bucket: 100 * time.Millisecond, SyncInterval: time.Hour}
	r := newRedisRL(t, b, opts)
	hy := newHybridRL(t, b, opts)
	if d, err := r.Absolute().Inc(ctx, "k", 10, 10); err != nil || !d.Allowed {
		t.Fatalf("filling the window: %+v, %v", d, err)
	}
	d, err := hy.Absolute().Inc(ctx, "k", 10, 1) // first use: pulls the full window
	if err != nil || d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > 1099*time.Millisecond {
		t.Fatalf("Hybrid over capacity: %+v, %v; want rejected with 0 < RetryAfter < 1.1s", d, err)
	}
	want, _ := r.Absolute().Inc(ctx, "k", 10, 1)
	if diff := d.RetryAfter - want.RetryAfter; diff < -50*time.Millisecond || diff > 50*time.Millisecond {
		t.Fatalf("Hybrid RetryAfter %v, Redis says %v", d.RetryAfter, want.RetryAfter)
	}
	h.Wait(t, d.RetryAfter+10*time.Millisecond)
	if err := hy.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := hy.Absolute().Allow(ctx, "k", 10); !ok || err != nil {
		t.Fatalf("Hybrid after RetryAfter: %v, %v", ok, err)
	}
}
