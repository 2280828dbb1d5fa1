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
	t.Run("LimitIsTheWindow", func(t *testing.T) { testRLLimitWindow(t, newHarness(t)) })
	t.Run("Peek", func(t *testing.T) { testRLPeek(t, newHarness(t)) })
	t.Run("Reset", func(t *testing.T) { testRLReset(t, newHarness(t)) })
	t.Run("SetIf", func(t *testing.T) { testRLSetIf(t, newHarness(t)) })
	t.Run("SetIfKeepsHistory", func(t *testing.T) { testRLSetIfHistory(t, newHarness(t)) })
	t.Run("Wait", func(t *testing.T) { testRLWait(t, newHarness(t)) })
	t.Run("WaitDegraded", func(t *testing.T) { testRLWaitDegraded(t, newHarness(t)) })
	t.Run("AnotherPeriod", func(t *testing.T) { testRLAnotherPeriod(t, newHarness(t)) })
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
	r := newRedisRL(t, open(t, h), ratelimit.Options{Prefix: p, Buckets: 10})
	a := r.Absolute()
	ten := ratelimit.PerSecond(10)
	for i := range 10 {
		d, err := a.Inc(ctx, "k", ten, 1)
		if err != nil || !d.Allowed || d.Remaining != int64(9-i) {
			t.Fatalf("request %d within capacity 10: %+v, %v", i, d, err)
		}
	}
	d, err := a.Inc(ctx, "k", ten, 1)
	// A bucket leaves when its end is a window old: within W + B − 1 ms.
	if err != nil || d.Allowed || d.Remaining != 0 || d.Limit != 10 || d.RetryAfter <= 0 || d.RetryAfter > 1099*time.Millisecond {
		t.Fatalf("request over capacity: %+v, %v; want rejected with 0 < RetryAfter < 1.1s", d, err)
	}
	h.Wait(t, d.RetryAfter+50*time.Millisecond)
	if ok, err := a.Allow(ctx, "k", ten); !ok || err != nil {
		t.Fatalf("after RetryAfter: %v, %v", ok, err)
	}
	for _, s := range []struct {
		n  int64
		ok bool
	}{{4, true}, {4, true}, {4, false}, {2, true}, {1, false}} {
		d, err := a.Inc(ctx, "n", ten, s.n)
		if err != nil || d.Allowed != s.ok {
			t.Fatalf("Inc n=%d: %+v, %v; want allowed %v", s.n, d, err, s.ok)
		}
	}
	r2 := newRedisRL(t, open(t, h), ratelimit.Options{Prefix: p, Buckets: 20})
	admitted := 0
	for range 8 {
		if ok, _ := r2.Absolute().Allow(ctx, "frac", ratelimit.Per(5, 2*time.Second)); ok { // 2.5/s
			admitted++
		}
	}
	if admitted != 5 {
		t.Fatalf("5 per 2 s: admitted %d, want 5", admitted)
	}
}

func testRLSuppressed(t *testing.T, h Harness) {
	ctx := context.Background()
	r := newRedisRL(t, open(t, h), ratelimit.Options{Prefix: prefix(t), Buckets: 10,
		HardLimitFactor: 2, SuppressionCache: time.Nanosecond})
	s := r.Suppressed()
	ten := ratelimit.PerSecond(10)
	for i := range 10 {
		d, err := s.Inc(ctx, "k", ten, 1)
		if err != nil || !d.Allowed || d.Suppression != 0 {
			t.Fatalf("offer %d below the rate: %+v, %v", i, d, err)
		}
	}
	var last ratelimit.Decision
	for range 10 { // offered 11..20: between soft and hard limit
		d, err := s.Inc(ctx, "k", ten, 1)
		if err != nil || d.Suppression <= 0 || d.Suppression >= 1 {
			t.Fatalf("between the limits: %+v, %v", d, err)
		}
		last = d
	}
	if want := 1 - 10.0/20; last.Suppression < want-1e-9 || last.Suppression > want+1e-9 {
		t.Fatalf("suppression at 2× offered: %v, want %v", last.Suppression, want)
	}
	for range 5 {
		d, err := s.Inc(ctx, "k", ten, 1)
		if err != nil || d.Allowed || d.Suppression != 1 {
			t.Fatalf("above the hard limit: %+v, %v", d, err)
		}
	}
}

func testRLKeys(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	b := open(t, h)
	r := newRedisRL(t, b, ratelimit.Options{Prefix: p})
	other := newRedisRL(t, b, ratelimit.Options{Prefix: p + "-other"})
	for _, key := range []string{"a", "b"} {
		if d, _ := r.Absolute().Inc(ctx, key, ratelimit.PerSecond(2), 2); !d.Allowed {
			t.Fatalf("key %s: %+v", key, d)
		}
	}
	if ok, _ := r.Absolute().Allow(ctx, "a", ratelimit.PerSecond(2)); ok {
		t.Fatal("key a over capacity admitted")
	}
	if ok, _ := other.Absolute().Allow(ctx, "a", ratelimit.PerSecond(2)); !ok {
		t.Fatal("another prefix shares key a's window")
	}
	if _, err := r.Absolute().Allow(ctx, "", ratelimit.PerSecond(1)); !errors.Is(err, distkit.ErrInvalidKey) {
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
	opts := ratelimit.Options{Prefix: p}
	hundred := ratelimit.PerSecond(100)
	down := h.NewBackend(t)
	closed := newRedisRL(t, down, opts)
	openRL := newRedisRL(t, down, ratelimit.Options{Prefix: p, OnError: ratelimit.FailOpen})
	// Hybrid: learn the key while the backend is up, then lose it.
	hyb := newHybridRL(t, down, ratelimit.Options{Prefix: p, SyncInterval: 5 * time.Millisecond})
	hybClosed := newHybridRL(t, down, ratelimit.Options{Prefix: p, SyncInterval: 5 * time.Millisecond, OnError: ratelimit.FailClosed})
	hyb.Absolute().Allow(ctx, "k", hundred)
	hybClosed.Absolute().Allow(ctx, "k", hundred)
	down.Close() // a cut connection: every call now fails, not applied
	degraded := func(what string, d ratelimit.Decision, err error, allowed bool) {
		t.Helper()
		// A call after Close is not applied; a Hybrid sync in flight when
		// the backend closed is, truthfully, indeterminate.
		backendErr := errors.Is(d.Degraded, distkit.ErrNotApplied) || errors.Is(d.Degraded, distkit.ErrIndeterminate)
		if err != nil || d.Allowed != allowed || !backendErr {
			t.Fatalf("%s: %+v, %v; want allowed=%v, degraded by the backend error, no error", what, d, err, allowed)
		}
	}
	d, err := closed.Absolute().Inc(ctx, "k", hundred, 1)
	degraded("FailClosed", d, err, false)
	d, err = openRL.Suppressed().Inc(ctx, "k", hundred, 1)
	degraded("FailOpen", d, err, true)
	d, err = openRL.Absolute().Inc(ctx, "k", hundred, 101)
	degraded("FailOpen, a request that never fits", d, err, false)
	eventually(t, 2*time.Second, "Hybrid notices the failed sync", func() bool {
		d, _ := hyb.Absolute().Inc(ctx, "k", hundred, 1)
		return d.Degraded != nil
	})
	d, err = hyb.Absolute().Inc(ctx, "k", hundred, 1)
	degraded("Hybrid FailLocal", d, err, true)
	d, err = hyb.Absolute().Inc(ctx, "k", hundred, 100)
	degraded("Hybrid FailLocal over capacity", d, err, false)
	eventually(t, 2*time.Second, "Hybrid FailClosed rejects", func() bool {
		d, err := hybClosed.Absolute().Inc(ctx, "k", hundred, 1)
		return !d.Allowed && err == nil && errors.Is(d.Degraded, distkit.ErrNotApplied)
	})
}

func testHybridGlobal(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	opts := ratelimit.Options{Prefix: p, SyncInterval: time.Hour} // syncs only when told
	a := newHybridRL(t, open(t, h), opts)
	b := newHybridRL(t, open(t, h), opts)
	for i := range 10 {
		if ok, err := a.Absolute().Allow(ctx, "k", ratelimit.Per(10, 2*time.Second)); !ok || err != nil { // capacity 10
			t.Fatalf("A request %d: %v, %v", i, ok, err)
		}
	}
	if ok, _ := a.Absolute().Allow(ctx, "k", ratelimit.Per(10, 2*time.Second)); ok {
		t.Fatal("A admitted past capacity locally")
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.Absolute().Allow(ctx, "k", ratelimit.Per(10, 2*time.Second)); ok { // B's first use reads the global count
		t.Fatal("B admitted although A used the whole capacity")
	}
	// The Redis provider sees the same window.
	r := newRedisRL(t, open(t, h), opts)
	if ok, _ := r.Absolute().Allow(ctx, "k", ratelimit.Per(10, 2*time.Second)); ok {
		t.Fatal("the Redis provider does not see Hybrid's pushes")
	}
}

func testHybridClose(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	opts := ratelimit.Options{Prefix: p, SyncInterval: time.Hour}
	hy, err := ratelimit.NewHybrid(open(t, h), opts)
	if err != nil {
		t.Fatal(err)
	}
	for range 7 {
		hy.Absolute().Allow(ctx, "k", ratelimit.Per(10, 2*time.Second))
	}
	if err := hy.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r := newRedisRL(t, open(t, h), opts)
	if d, _ := r.Absolute().Inc(ctx, "k", ratelimit.Per(10, 2*time.Second), 4); d.Allowed || d.Remaining != 3 {
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
		window  = 500 * time.Millisecond
		buckets = 10 // of 50 ms
		run     = 1500 * time.Millisecond
	)
	for _, kind := range []string{"redis", "hybrid"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			p := prefix(t)
			opts := ratelimit.Options{Prefix: p, Buckets: buckets, SyncInterval: 10 * time.Millisecond}
			limit := ratelimit.Per(100, window)
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
							d, err := abs.Inc(ctx, "k", limit, 1)
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
			capacity := 100
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
	opts := ratelimit.Options{Prefix: p, SyncInterval: time.Hour}
	ten := ratelimit.PerSecond(10)
	r := newRedisRL(t, b, opts)
	hy := newHybridRL(t, b, opts)
	for name, s := range map[string]struct {
		abs *ratelimit.Absolute
		sup *ratelimit.Suppressed
	}{"redis": {r.Absolute(), r.Suppressed()}, "hybrid": {hy.Absolute(), hy.Suppressed()}} {
		for _, n := range []int64{math.MaxInt64, math.MaxInt64 - 1, 1e17, 1<<53 + 1, 11} {
			for strat, inc := range map[string]func() (ratelimit.Decision, error){
				"abs": func() (ratelimit.Decision, error) { return s.abs.Inc(ctx, name+"-abs", ten, n) },
				"sup": func() (ratelimit.Decision, error) { return s.sup.Inc(ctx, name+"-sup", ten, n) },
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
			if ok, err := s.abs.Allow(ctx, name+"-abs", ten); err != nil {
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
	hy := newHybridRL(t, b, ratelimit.Options{Prefix: p, SyncInterval: 5 * time.Millisecond})
	if _, err := b.EvalScript(ctx, testkitWrongType, []string{keyspace.RateLimit(p, "bad").Counts}); err == nil {
		t.Fatal("WRONGTYPE script succeeded")
	}
	var bad ratelimit.Decision
	for i := range 20 {
		d, err := hy.Absolute().Inc(ctx, "bad", ratelimit.PerSecond(100), 1)
		if err != nil {
			t.Fatalf("bad key: the server's rejection became the call's error: %v", err)
		}
		bad = d
		if d, err := hy.Absolute().Inc(ctx, "good", ratelimit.PerSecond(100), 1); err != nil || !d.Allowed || d.Degraded != nil {
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
	hy := newHybridRL(t, open(t, h), ratelimit.Options{Prefix: prefix(t), SyncInterval: time.Hour})
	if ok, err := hy.Absolute().Allow(ctx, "a", ratelimit.PerSecond(100)); !ok || err != nil {
		t.Fatalf("key a: %v, %v", ok, err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := hy.Absolute().Allow(cancelled, "b", ratelimit.PerSecond(100)); !errors.Is(err, context.Canceled) {
		t.Fatalf("a fresh key with a cancelled context: %v; want the caller's context error", err)
	}
	if d, err := hy.Absolute().Inc(ctx, "a", ratelimit.PerSecond(100), 1); err != nil || !d.Allowed || d.Degraded != nil {
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
	hy := newHybridRL(t, cb, ratelimit.Options{Prefix: prefix(t), SyncInterval: 5 * time.Millisecond})
	for i := range 50 {
		hy.Absolute().Allow(ctx, fmt.Sprint("k", i), ratelimit.Per(1000, 10*time.Second))
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
	const window = 400 * time.Millisecond
	r := newRedisRL(t, open(t, h), ratelimit.Options{Prefix: prefix(t), Buckets: 10}) // of 40 ms
	var at []time.Time
	fake := testkit.IsFakeTime(h)
	start := time.Now()
	for step := 0; step < 1200; step++ {
		if !fake && time.Since(start) > 1200*time.Millisecond {
			break
		}
		for range 12 { // capacity 10: burst until rejected
			d, err := r.Absolute().Inc(ctx, "k", ratelimit.Per(10, window), 1)
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

// testRLCapacity: PerMinute(123) admits exactly 123, and Suppressed's hard
// limit 60 × 2.05 is 123 (122.99999999999999 in float64), for Redis and
// Hybrid alike; Remaining always says what the next request gets; invalid
// limits are ErrInvalidOption.
func testRLCapacity(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	b := open(t, h)
	r := newRedisRL(t, b, ratelimit.Options{Prefix: p, HardLimitFactor: 2.05})
	hy := newHybridRL(t, b, ratelimit.Options{Prefix: p + "-h", HardLimitFactor: 2.05, SyncInterval: time.Hour})
	for name, s := range map[string]struct {
		a *ratelimit.Absolute
		s *ratelimit.Suppressed
	}{"redis": {r.Absolute(), r.Suppressed()}, "hybrid": {hy.Absolute(), hy.Suppressed()}} {
		admitted := 0
		var last ratelimit.Decision
		for i := range 126 {
			d, err := s.a.Inc(ctx, "k", ratelimit.PerMinute(123), 1)
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
			t.Fatalf("%s: PerMinute(123) admitted %d (limit %d), want 123", name, admitted, last.Limit)
		}
		d, err := s.s.Inc(ctx, "sup", ratelimit.PerMinute(60), 123)
		if err != nil || d.Limit != 123 || d.Remaining != 0 || d.Suppression == 1 {
			t.Fatalf("%s: Suppressed 60/min × 2.05 offered 123: %+v, %v; want hard limit 123 reached, not passed", name, d, err)
		}
		if d, _ := s.s.Inc(ctx, "sup", ratelimit.PerMinute(60), 1); d.Allowed || d.Suppression != 1 {
			t.Fatalf("%s: offer 124 above the hard limit 123: %+v", name, d)
		}
	}
	for _, a := range []*ratelimit.Absolute{r.Absolute(), hy.Absolute()} {
		for _, l := range []ratelimit.Limit{{}, ratelimit.PerMinute(0), ratelimit.Every(time.Microsecond), ratelimit.PerSecond(ratelimit.MaxCount + 1)} {
			if _, err := a.Inc(ctx, "k", l, 1); !errors.Is(err, distkit.ErrInvalidOption) {
				t.Fatalf("limit %v: %v; want ErrInvalidOption", l, err)
			}
		}
	}
	if _, err := r.Suppressed().Inc(ctx, "k", ratelimit.PerMinute(ratelimit.MaxCount), 1); !errors.Is(err, distkit.ErrInvalidOption) {
		t.Fatalf("a hard limit above MaxCount: %v; want ErrInvalidOption", err)
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
	if ok, err := hy.Absolute().Allow(ctx, "k", ratelimit.PerMinute(600)); !ok || err != nil {
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
		if ok, err := c.Absolute().Allow(ctx, "k", ratelimit.PerMinute(600)); ok || !errors.Is(err, distkit.ErrClosed) {
			t.Fatalf("%s after Close: %v, %v; want ErrClosed", name, ok, err)
		}
		if ok, err := c.Suppressed().Allow(ctx, "k", ratelimit.PerMinute(600)); ok || !errors.Is(err, distkit.ErrClosed) {
			t.Fatalf("%s Suppressed after Close: %v, %v; want ErrClosed", name, ok, err)
		}
	}
	r2 := newRedisRL(t, b, ratelimit.Options{Prefix: p})
	if d, _ := r2.Absolute().Inc(ctx, "k", ratelimit.PerMinute(600), 1); d.Remaining != 598 {
		t.Fatalf("after Hybrid's Close: %+v; want its one admission counted", d)
	}
}

// testHybridRetryAfter: a Hybrid rejection says when to retry, from the
// oldest buckets it saw at its last sync.
func testHybridRetryAfter(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	b := open(t, h)
	opts := ratelimit.Options{Prefix: p, Buckets: 10, SyncInterval: time.Hour}
	ten := ratelimit.PerSecond(10)
	r := newRedisRL(t, b, opts)
	hy := newHybridRL(t, b, opts)
	if d, err := r.Absolute().Inc(ctx, "k", ten, 10); err != nil || !d.Allowed {
		t.Fatalf("filling the window: %+v, %v", d, err)
	}
	d, err := hy.Absolute().Inc(ctx, "k", ten, 1) // first use: pulls the full window
	if err != nil || d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > 1099*time.Millisecond {
		t.Fatalf("Hybrid over capacity: %+v, %v; want rejected with 0 < RetryAfter < 1.1s", d, err)
	}
	want, _ := r.Absolute().Inc(ctx, "k", ten, 1)
	if diff := d.RetryAfter - want.RetryAfter; diff < -50*time.Millisecond || diff > 50*time.Millisecond {
		t.Fatalf("Hybrid RetryAfter %v, Redis says %v", d.RetryAfter, want.RetryAfter)
	}
	h.Wait(t, d.RetryAfter+10*time.Millisecond)
	if err := hy.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := hy.Absolute().Allow(ctx, "k", ten); !ok || err != nil {
		t.Fatalf("Hybrid after RetryAfter: %v, %v", ok, err)
	}
}

// rlProvider is one backend provider as the suite drives it.
type rlProvider struct {
	name  string
	abs   *ratelimit.Absolute
	sup   *ratelimit.Suppressed
	sync  func() // Hybrid: push and pull now
	reset func(context.Context, string) error
	setIf func(context.Context, string, ratelimit.Limit, distkit.Comparator, int64, ratelimit.History) (int64, int64, error)
}

// rlProviders are a Redis and a Hybrid provider (syncing only when told,
// unless opts sets a SyncInterval) over fresh backends of h, on distinct
// prefixes.
func rlProviders(t *testing.T, h Harness, opts ratelimit.Options) []rlProvider {
	p := prefix(t)
	ro, ho := opts, opts
	ro.Prefix, ho.Prefix = p+"-redis", p+"-hybrid"
	if ho.SyncInterval == 0 {
		ho.SyncInterval = time.Hour // syncs when told
	}
	r := newRedisRL(t, open(t, h), ro)
	hy := newHybridRL(t, open(t, h), ho)
	return []rlProvider{
		{"redis", r.Absolute(), r.Suppressed(), func() {}, r.Reset, r.SetIf},
		{"hybrid", hy.Absolute(), hy.Suppressed(), func() {
			// Two rounds: the first pushes, and keys it did not carry are
			// then stale, pulled afresh by their next use.
			for range 2 {
				if err := hy.Sync(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		}, hy.Reset, hy.SetIf},
	}
}

// testRLLimitWindow: the window is the limit's own period: PerSecond(10)
// admits 10 at once, not a minute's worth, and again a second later;
// PerMinute(100) admits its burst and then nothing a second later.
func testRLLimitWindow(t *testing.T, h Harness) {
	ctx := context.Background()
	for _, p := range rlProviders(t, h, ratelimit.Options{}) {
		count := func(key string, l ratelimit.Limit, n int) int {
			admitted := 0
			for range n {
				ok, err := p.abs.Allow(ctx, key, l)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					admitted++
				}
			}
			return admitted
		}
		if got := count("s", ratelimit.PerSecond(10), 30); got != 10 {
			t.Fatalf("%s: PerSecond(10) admitted %d of 30 at once, want 10", p.name, got)
		}
		if got := count("m", ratelimit.PerMinute(100), 130); got != 100 {
			t.Fatalf("%s: PerMinute(100) admitted %d of 130 at once, want 100", p.name, got)
		}
		p.sync() // a Hybrid's admissions count from when they are pushed
		h.Wait(t, 1100*time.Millisecond)
		p.sync()
		if got := count("s", ratelimit.PerSecond(10), 30); got != 10 {
			t.Fatalf("%s: PerSecond(10) a second later admitted %d, want 10", p.name, got)
		}
		if got := count("m", ratelimit.PerMinute(100), 10); got != 0 {
			t.Fatalf("%s: PerMinute(100) a second after its burst admitted %d, want 0", p.name, got)
		}
	}
}

// testRLPeek: Peek reads the window without consuming and agrees with the
// next decision.
func testRLPeek(t *testing.T, h Harness) {
	ctx := context.Background()
	ten := ratelimit.PerSecond(10)
	for _, p := range rlProviders(t, h, ratelimit.Options{Buckets: 10, HardLimitFactor: 2}) {
		st, err := p.abs.Peek(ctx, "k", ten)
		if err != nil || st.Count != 0 || st.Remaining != 10 || st.Limit != 10 || st.RetryAfter != 0 || st.ReleaseAfter != 0 || st.Degraded != nil {
			t.Fatalf("%s: Peek of a key never used: %+v, %v", p.name, st, err)
		}
		if d, err := p.abs.Inc(ctx, "k", ten, 3); err != nil || !d.Allowed || d.ReleaseAfter <= 0 || d.ReleaseAfter > 1100*time.Millisecond {
			t.Fatalf("%s: Inc 3: %+v, %v; want admitted, released within a window", p.name, d, err)
		}
		p.sync()
		for range 3 { // consumes nothing
			st, err = p.abs.Peek(ctx, "k", ten)
			if err != nil || st.Count != 3 || st.Remaining != 7 || st.RetryAfter != 0 || st.ReleaseAfter <= 0 || st.ReleaseAfter > 1100*time.Millisecond {
				t.Fatalf("%s: Peek after 3: %+v, %v", p.name, st, err)
			}
		}
		sst, err := p.sup.Peek(ctx, "k", ten)
		if err != nil || sst.Limit != 20 || sst.Count != 3 || sst.Remaining != 17 || sst.Suppression != 0 {
			t.Fatalf("%s: Suppressed Peek: %+v, %v", p.name, sst, err)
		}
		if d, _ := p.abs.Inc(ctx, "k", ten, 7); !d.Allowed {
			t.Fatalf("%s: the 7 Peek said remain: %+v", p.name, d)
		}
		p.sync()
		st, err = p.abs.Peek(ctx, "k", ten)
		if err != nil || st.Remaining != 0 || st.RetryAfter <= 0 {
			t.Fatalf("%s: Peek of a full window: %+v, %v", p.name, st, err)
		}
		d, _ := p.abs.Inc(ctx, "k", ten, 1)
		if d.Allowed || (d.RetryAfter-st.RetryAfter).Abs() > 60*time.Millisecond {
			t.Fatalf("%s: Peek said retry in %v, the decision %+v", p.name, st.RetryAfter, d)
		}
		sst, _ = p.sup.Peek(ctx, "k", ten) // 10 offered: the 11th would be suppressed with 1 − 10/11
		if want := 1 - 10.0/11; sst.Suppression < want-1e-9 || sst.Suppression > want+1e-9 {
			t.Fatalf("%s: Suppressed Peek of a full soft limit: %+v, want suppression %v", p.name, sst, want)
		}
		if _, err := p.abs.Peek(ctx, "", ten); !errors.Is(err, distkit.ErrInvalidKey) {
			t.Fatalf("%s: Peek of an empty key: %v", p.name, err)
		}
		if _, err := p.abs.Peek(ctx, "k", ratelimit.Limit{}); !errors.Is(err, distkit.ErrInvalidOption) {
			t.Fatalf("%s: Peek with a zero Limit: %v", p.name, err)
		}
	}
}

// testRLReset: Reset empties a key's window for every provider sharing it;
// a Hybrid forgets its own unpushed increments of the key.
func testRLReset(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	lim := ratelimit.PerHour(5)
	opts := ratelimit.Options{Prefix: p, SyncInterval: time.Hour}
	r := newRedisRL(t, open(t, h), opts)
	hy := newHybridRL(t, open(t, h), opts)
	other := newHybridRL(t, open(t, h), opts)
	if d, _ := r.Absolute().Inc(ctx, "k", lim, 5); !d.Allowed {
		t.Fatalf("filling the window: %+v", d)
	}
	if ok, _ := other.Absolute().Allow(ctx, "k", lim); ok {
		t.Fatal("another Hybrid admitted into a full window")
	}
	if err := r.Reset(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if d, err := hy.Absolute().Inc(ctx, "k", lim, 5); err != nil || !d.Allowed { // first use: pulls the reset window
		t.Fatalf("Hybrid after Reset: %+v, %v", d, err)
	}
	if err := hy.Reset(ctx, "k"); err != nil { // forgets its 5, never pushed
		t.Fatal(err)
	}
	if err := hy.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.Absolute().Peek(ctx, "k", lim); st.Count != 0 {
		t.Fatalf("after Hybrid's Reset: %+v; want its unpushed increments forgotten", st)
	}
	if d, _ := hy.Absolute().Inc(ctx, "k", lim, 5); !d.Allowed {
		t.Fatalf("Hybrid after its own Reset: %+v", d)
	}
	if err := other.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Reset(ctx, "never-used"); err != nil {
		t.Fatalf("Reset of a key never used: %v", err)
	}
	if err := r.Reset(ctx, ""); !errors.Is(err, distkit.ErrInvalidKey) {
		t.Fatalf("Reset of an empty key: %v", err)
	}
	if err := hy.Reset(ctx, ""); !errors.Is(err, distkit.ErrInvalidKey) {
		t.Fatalf("Hybrid Reset of an empty key: %v", err)
	}
}

// testRLSetIf: SetIf compares the window count and sets it, returning
// (new, old) on a match and (current, current) otherwise; a Hybrid pushes
// its own increments first.
func testRLSetIf(t *testing.T, h Harness) {
	ctx := context.Background()
	lim := ratelimit.PerHour(10)
	for _, p := range rlProviders(t, h, ratelimit.Options{}) {
		type step struct {
			cmp       distkit.Comparator
			value     int64
			hist      ratelimit.History
			cur, prev int64
		}
		p.abs.Inc(ctx, "k", lim, 4)
		for i, s := range []step{
			{distkit.Gt(4), 9, ratelimit.KeepHistory, 4, 4},
			{distkit.Ge(4), 9, ratelimit.KeepHistory, 9, 4},
			{distkit.Eq(9), 2, ratelimit.KeepHistory, 2, 9},
			{distkit.Lt(math.MinInt64), 0, ratelimit.KeepHistory, 2, 2},
			{distkit.Le(math.MaxInt64), 12, ratelimit.ReplaceHistory, 12, 2},
			{distkit.Ne(0), 0, ratelimit.ReplaceHistory, 0, 12},
			{distkit.Always(), ratelimit.MaxCount, ratelimit.KeepHistory, ratelimit.MaxCount, 0},
		} {
			cur, prev, err := p.setIf(ctx, "k", lim, s.cmp, s.value, s.hist)
			if err != nil || cur != s.cur || prev != s.prev {
				t.Fatalf("%s step %d SetIf(%+v, %d, %v): %d, %d, %v; want %d, %d", p.name, i, s.cmp, s.value, s.hist, cur, prev, err, s.cur, s.prev)
			}
		}
		if d, _ := p.abs.Inc(ctx, "k", lim, 1); d.Allowed || d.Remaining != 0 {
			t.Fatalf("%s: after setting the count to MaxCount: %+v", p.name, d)
		}
		if cur, prev, err := p.setIf(ctx, "k", lim, distkit.Gt(10), 7, ratelimit.KeepHistory); err != nil || cur != 7 || prev != ratelimit.MaxCount {
			t.Fatalf("%s: clamp: %d, %d, %v", p.name, cur, prev, err)
		}
		if d, _ := p.abs.Inc(ctx, "k", lim, 3); !d.Allowed || d.Remaining != 0 {
			t.Fatalf("%s: after clamping to 7 of 10: %+v", p.name, d)
		}
		// A Hybrid's own increments count in the comparison.
		p.abs.Inc(ctx, "h", lim, 3)
		if cur, prev, err := p.setIf(ctx, "h", lim, distkit.Eq(3), 5, ratelimit.KeepHistory); err != nil || cur != 5 || prev != 3 {
			t.Fatalf("%s: SetIf after 3 admitted locally: %d, %d, %v", p.name, cur, prev, err)
		}
		p.sync()
		if st, _ := p.abs.Peek(ctx, "h", lim); st.Count != 5 {
			t.Fatalf("%s: after SetIf: %+v; want 5, the increments not counted twice", p.name, st)
		}
		for _, bad := range []struct {
			key   string
			lim   ratelimit.Limit
			value int64
			hist  ratelimit.History
			want  error
		}{{"", lim, 1, ratelimit.KeepHistory, distkit.ErrInvalidKey}, {"k", ratelimit.Limit{}, 1, ratelimit.KeepHistory, distkit.ErrInvalidOption},
			{"k", lim, -1, ratelimit.KeepHistory, distkit.ErrInvalidOption}, {"k", lim, ratelimit.MaxCount + 1, ratelimit.KeepHistory, distkit.ErrInvalidOption},
			{"k", lim, 1, ratelimit.History(9), distkit.ErrInvalidOption}} {
			if _, _, err := p.setIf(ctx, bad.key, bad.lim, distkit.Always(), bad.value, bad.hist); !errors.Is(err, bad.want) {
				t.Fatalf("%s: SetIf(%q, %v, %d, %v): %v; want %v", p.name, bad.key, bad.lim, bad.value, bad.hist, err, bad.want)
			}
		}
		if _, _, err := p.setIf(ctx, "k", lim, distkit.Comparator{Op: 42}, 1, ratelimit.KeepHistory); !errors.Is(err, distkit.ErrInvalidOption) {
			t.Fatalf("%s: SetIf with an unknown comparator: %v; want ErrInvalidOption", p.name, err)
		}
	}
}

// testRLSetIfHistory: KeepHistory lowers a count from the newest buckets,
// so what stays leaves when it would have; ReplaceHistory re-dates
// everything to now.
func testRLSetIfHistory(t *testing.T, h Harness) {
	ctx := context.Background()
	lim := ratelimit.PerSecond(10) // buckets of 100 ms
	for _, p := range rlProviders(t, h, ratelimit.Options{Buckets: 10}) {
		p.abs.Inc(ctx, "keep", lim, 2)
		p.abs.Inc(ctx, "replace", lim, 2)
		p.sync()
		h.Wait(t, 500*time.Millisecond)
		p.abs.Inc(ctx, "keep", lim, 8)
		p.abs.Inc(ctx, "replace", lim, 8)
		p.sync()
		if cur, prev, err := p.setIf(ctx, "keep", lim, distkit.Always(), 2, ratelimit.KeepHistory); err != nil || cur != 2 || prev != 10 {
			t.Fatalf("%s: keep: %d, %d, %v", p.name, cur, prev, err)
		}
		if cur, prev, err := p.setIf(ctx, "replace", lim, distkit.Always(), 2, ratelimit.ReplaceHistory); err != nil || cur != 2 || prev != 10 {
			t.Fatalf("%s: replace: %d, %d, %v", p.name, cur, prev, err)
		}
		p.sync()
		keep, _ := p.abs.Peek(ctx, "keep", lim)
		repl, _ := p.abs.Peek(ctx, "replace", lim)
		// The 2 kept are the oldest: they leave about 0.5 s from now; the
		// replaced 2 a whole second from now.
		if keep.ReleaseAfter <= 0 || keep.ReleaseAfter > 700*time.Millisecond || repl.ReleaseAfter < 900*time.Millisecond {
			t.Fatalf("%s: release after keep %v, after replace %v; want about 0.5 s and 1 s", p.name, keep.ReleaseAfter, repl.ReleaseAfter)
		}
		h.Wait(t, keep.ReleaseAfter+60*time.Millisecond)
		p.sync()
		if st, _ := p.abs.Peek(ctx, "keep", lim); st.Count != 0 {
			t.Fatalf("%s: the 2 kept did not leave with their bucket: %+v", p.name, st)
		}
		if st, _ := p.abs.Peek(ctx, "replace", lim); st.Count != 2 {
			t.Fatalf("%s: the replaced 2 left early: %+v", p.name, st)
		}
	}
}

// testRLWait: Wait blocks until the request fits, refuses at once when the
// deadline comes first or the request never fits, and ends with ctx.
func testRLWait(t *testing.T, h Harness) {
	ctx := context.Background()
	lim := ratelimit.Every(300 * time.Millisecond)
	for _, p := range rlProviders(t, h, ratelimit.Options{SyncInterval: 5 * time.Millisecond}) {
		if d, err := p.abs.Wait(ctx, "k", lim, 1); err != nil || !d.Allowed {
			t.Fatalf("%s: Wait on an empty window: %+v, %v", p.name, d, err)
		}
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		start := time.Now()
		d, err := p.abs.Wait(short, "k", lim, 1)
		cancel()
		if !errors.Is(err, distkit.ErrTimeout) || d.Allowed || d.RetryAfter <= 50*time.Millisecond || time.Since(start) > 40*time.Millisecond {
			t.Fatalf("%s: Wait with a deadline before the request fits: %+v, %v after %v; want ErrTimeout at once", p.name, d, err, time.Since(start))
		}
		if _, err := p.abs.Wait(ctx, "k", lim, 2); !errors.Is(err, distkit.ErrInvalidOption) {
			t.Fatalf("%s: Wait for more than the limit: %v; want ErrInvalidOption", p.name, err)
		}
		ended, end := context.WithCancel(ctx)
		end()
		if d, err := p.abs.Wait(ended, "free", lim, 1); !errors.Is(err, context.Canceled) || d.Allowed {
			t.Fatalf("%s: Wait with an ended context: %+v, %v; want context.Canceled, nothing admitted", p.name, d, err)
		}
		if st, err := p.abs.Peek(ctx, "free", lim); err != nil || st.Count != 0 {
			t.Fatalf("%s: a Wait with an ended context counted %+v, %v", p.name, st, err)
		}
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(20*time.Millisecond, cancel)
		if _, err := p.abs.Wait(cctx, "k", lim, 1); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: Wait cancelled while waiting: %v", p.name, err)
		}
		done := make(chan struct{})
		if testkit.IsFakeTime(h) { // server time moves only when told
			go func() {
				for {
					select {
					case <-done:
						return
					default:
						h.Wait(t, 10*time.Millisecond)
						time.Sleep(2 * time.Millisecond)
					}
				}
			}()
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		d, err = p.abs.Wait(wctx, "k", lim, 1)
		cancel()
		close(done)
		if err != nil || !d.Allowed {
			t.Fatalf("%s: Wait until it fits: %+v, %v", p.name, d, err)
		}
		if ok, _ := p.abs.Allow(ctx, "k", lim); ok {
			t.Fatalf("%s: Wait's admission was not counted", p.name)
		}
	}
}

// testRLWaitDegraded: with the backend gone and FailClosed, Wait polls
// until ctx ends (no RetryAfter to trust); with FailOpen it returns the
// degraded admission.
func testRLWaitDegraded(t *testing.T, h Harness) {
	ctx := context.Background()
	down := h.NewBackend(t)
	closed := newRedisRL(t, down, ratelimit.Options{Prefix: prefix(t)})
	openRL := newRedisRL(t, down, ratelimit.Options{Prefix: prefix(t), OnError: ratelimit.FailOpen})
	down.Close()
	wctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel()
	d, err := closed.Absolute().Wait(wctx, "k", ratelimit.PerSecond(10), 1)
	if !errors.Is(err, context.DeadlineExceeded) || d.Allowed || d.Degraded == nil {
		t.Fatalf("FailClosed Wait with the backend down: %+v, %v; want the degraded rejection and ctx's error", d, err)
	}
	d, err = openRL.Absolute().Wait(ctx, "k", ratelimit.PerSecond(10), 1)
	if err != nil || !d.Allowed || !errors.Is(d.Degraded, distkit.ErrNotApplied) {
		t.Fatalf("FailOpen Wait with the backend down: %+v, %v", d, err)
	}
}

// testRLAnotherPeriod: a key used under another period keeps what it
// holds (re-dated to now), never forgets it.
func testRLAnotherPeriod(t *testing.T, h Harness) {
	ctx := context.Background()
	for _, p := range rlProviders(t, h, ratelimit.Options{}) {
		if d, _ := p.abs.Inc(ctx, "k", ratelimit.PerSecond(5), 4); !d.Allowed {
			t.Fatalf("%s: %+v", p.name, d)
		}
		p.sync()
		if st, _ := p.abs.Peek(ctx, "k", ratelimit.PerMinute(5)); st.Count != 4 || st.Remaining != 1 {
			t.Fatalf("%s: Peek under another period: %+v; want the 4 counted", p.name, st)
		}
		if d, _ := p.abs.Inc(ctx, "k", ratelimit.PerMinute(5), 2); d.Allowed {
			t.Fatalf("%s: 2 more under PerMinute(5) with 4 held: %+v", p.name, d)
		}
		if d, _ := p.abs.Inc(ctx, "k", ratelimit.PerMinute(5), 1); !d.Allowed || d.ReleaseAfter < 50*time.Second {
			t.Fatalf("%s: the fifth under PerMinute(5): %+v; want admitted, the window released a minute from now", p.name, d)
		}
	}
}
