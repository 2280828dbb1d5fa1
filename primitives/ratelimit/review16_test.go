package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// The capacity is N exactly and the hard limit ⌊N × HardLimitFactor⌋; the
// 10⁻¹⁴ tolerance that lets a factor of 4.0/3 mean 4/3 must never add units
// to a product that is already an integer: 6·10¹⁴ × 1.5 is 9·10¹⁴, not one
// more.
func TestReview16_CapacityExactForLargeProducts(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		limit     ratelimit.Limit
		hlf       float64
		cap, hard int64
	}{
		{ratelimit.Per(172_800_000_000_000, 24*time.Hour), 1, 172_800_000_000_000, 172_800_000_000_000},
		{ratelimit.PerMinute(600_000_000_000_000), 1, 600_000_000_000_000, 600_000_000_000_000},
		{ratelimit.PerMinute(600_000_000_000_000), 1.5, 600_000_000_000_000, 900_000_000_000_000},
		{ratelimit.PerMinute(9_000_000_000_000_000), 1, 9_000_000_000_000_000, 9_000_000_000_000_000},
		{ratelimit.PerMinute(3), 4.0 / 3, 3, 4},
	} {
		w := newWorld(t, ratelimit.Options{HardLimitFactor: tc.hlf})
		for _, p := range w.providers(t) {
			p.before()
			d, err := p.abs.Inc(ctx, "k", tc.limit, 1)
			if err != nil || d.Limit != tc.cap {
				t.Errorf("%s: %v: capacity %d (%v), want N = %d", p.name, tc.limit, d.Limit, err, tc.cap)
			}
			d, err = p.sup.Inc(ctx, "s", tc.limit, 1)
			if err != nil || d.Limit != tc.hard {
				t.Errorf("%s: %v × %v: hard limit %d (%v), want %d", p.name, tc.limit, tc.hlf, d.Limit, err, tc.hard)
			}
		}
	}
}

// A server that refuses a script for a server-wide, passing reason
// (LOADING after a restart, BUSY, READONLY during a failover, TRYAGAIN,
// CLUSTERDOWN: replies the driver classifies as not applied) is a
// transient failure: the next sync that succeeds clears it. It must not
// quarantine the key as if the server had rejected that key, which keeps
// its decisions degraded (rejected under FailClosed) for seconds to a
// minute after the server is back.
func TestReview16_HybridTransientRefusalNotQuarantined(t *testing.T) {
	ctx := context.Background()
	for _, reply := range []string{
		"LOADING Redis is loading the dataset in memory",
		"BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT.",
		"READONLY You can't write against a read only replica.",
		"TRYAGAIN Multiple keys request during rehashing of slot",
		"CLUSTERDOWN The cluster is down",
	} {
		t.Run(reply[:8], func(t *testing.T) {
			clk := &manualClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
			b := memory.New(memory.Options{Clock: clk})
			h := newHybrid(t, b, ratelimit.Options{SyncInterval: time.Hour, Clock: clk, OnError: ratelimit.FailClosed})
			ten := perMinute600
			if d, err := h.Absolute().Inc(ctx, "k", ten, 1); err != nil || !d.Allowed || d.Degraded != nil {
				t.Fatalf("first decision: %+v, %v", d, err)
			}
			h.Absolute().Inc(ctx, "k", ten, 1) // queued for the next sync
			refusal := driver.ClassifyReply("ratelimit-window", reply)
			if !errors.Is(refusal, backend.ErrNotApplied) {
				t.Fatalf("the driver classifies %q as %v", reply, refusal)
			}
			b.FailNext(1, refusal)
			if err := h.Sync(ctx); err == nil {
				t.Fatal("the refused sync succeeded")
			}
			// The server is back: the next sync carries the key and clears
			// its failure.
			h.Absolute().Inc(ctx, "k", ten, 1)
			if err := h.Sync(ctx); err != nil {
				t.Fatalf("sync with the server back: %v", err)
			}
			if d, err := h.Absolute().Inc(ctx, "k", ten, 1); err != nil || !d.Allowed || d.Degraded != nil {
				t.Fatalf("after a successful sync: %+v, %v; want a normal decision (the %q refusal was transient)", d, err, reply[:8])
			}
		})
	}
}

// gate tells when a script call has reached the backend.
type gate struct {
	backend.Backend
	entered chan struct{}
}

func (g *gate) EvalScripts(ctx context.Context, calls []backend.Call) []backend.Result {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	return g.Backend.EvalScripts(ctx, calls)
}

// Close returns within its context although a caller's Sync (under a
// longer context) is stuck on a hung backend.
func TestReview16_CloseWithinCtxWhileSyncHung(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	g := &gate{Backend: b, entered: make(chan struct{}, 1)}
	h, err := ratelimit.NewHybrid(g, ratelimit.Options{SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ten := perMinute600
	if _, err := h.Absolute().Inc(ctx, "k", ten, 1); err != nil { // first use: pulls
		t.Fatal(err)
	}
	<-g.entered
	b.Latency(time.Hour)
	syncCtx, cancelSync := context.WithCancel(ctx)
	syncDone := make(chan error, 1)
	go func() { syncDone <- h.Sync(syncCtx) }()
	<-g.entered // the Sync now waits on the backend
	defer func() {
		cancelSync()
		<-syncDone
		b.Latency(0)
		h.Close(ctx)
	}()
	closeCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- h.Close(closeCtx) }()
	select {
	case err := <-closed:
		if err == nil {
			t.Fatal("Close reported success although the increment was never pushed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close(ctx with 100ms) still running after 5s: it waits for another caller's Sync on a hung backend")
	}
}

// FailLocal keeps enforcing the capacity per window while the backend is
// down: an outage longer than the window must not turn into "reject
// everything" once C requests were admitted locally (the local count never
// leaves the window, and neither does the last pulled global count). Every
// window still holds at most C, and once the backend is back only what is
// still in the window is pushed, once.
func TestReview16_FailLocalOutageLongerThanWindow(t *testing.T) {
	ctx := context.Background()
	clk := &manualClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := memory.New(memory.Options{Clock: clk})
	h := newHybrid(t, b, ratelimit.Options{SyncInterval: time.Hour, Clock: clk}) // FailLocal
	a := h.Absolute()
	ten := ratelimit.PerSecond(10)
	for i := range 5 {
		if d, err := a.Inc(ctx, "k", ten, 1); err != nil || !d.Allowed { // capacity 10
			t.Fatalf("request %d: %+v, %v", i, d, err)
		}
	}
	if err := h.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	at := []time.Time{clk.Now(), clk.Now(), clk.Now(), clk.Now(), clk.Now()}
	b.FailNext(1<<30, nil) // the backend is down from now on
	for window := range 5 {
		admitted := 0
		var last ratelimit.Decision
		for range 20 {
			d, err := a.Inc(ctx, "k", ten, 1)
			if err != nil {
				t.Fatal(err)
			}
			h.Sync(ctx) // fails
			if d.Allowed {
				admitted++
				at = append(at, d.At)
			}
			last = d
			clk.Advance(10 * time.Millisecond)
		}
		want := 10
		if window == 0 {
			want = 5 // with the 5 admitted before the outage
		}
		if admitted != want {
			t.Fatalf("outage window %d: admitted %d of 20 under FailLocal (last %+v); want %d (the capacity 10 per window)", window, admitted, last, want)
		}
		if window < 4 {
			clk.Advance(900 * time.Millisecond)
		}
	}
	if worst := testkit.MaxInWindow(at, time.Second); worst > 10 {
		t.Fatalf("%d admitted within one second during the outage, capacity 10", worst)
	}
	// The backend is back 200 ms after the last window's 10 admissions
	// (made over 100 ms): they are all still in the window and pushed once.
	b.FailNext(0, nil)
	if err := h.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	r := testkit.NewRedisLimiter(t, b, ratelimit.Options{})
	if st, err := r.Absolute().Peek(ctx, "k", ten); err != nil || st.Count != 10 {
		t.Fatalf("the server after the outage: %+v, %v; want the 10 still in the window, pushed once", st, err)
	}
	if d, err := a.Inc(ctx, "k", ten, 1); err != nil || d.Allowed || d.Degraded != nil {
		t.Fatalf("after the push: %+v, %v; want a normal rejection", d, err)
	}
}

// Local's memory per key grows with what the key holds, not with the
// number of buckets in the window: one request per key for many keys (say
// one per client address) must not cost a whole bucket ring each.
func TestReview16_LocalMemoryPerKey(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		opts  ratelimit.Options
		limit ratelimit.Limit
		keys  int
	}{
		{ratelimit.Options{}, ratelimit.PerMinute(60), 20000},                                     // defaults: 100 buckets
		{ratelimit.Options{Buckets: ratelimit.MaxBuckets}, ratelimit.Per(86400, 24*time.Hour), 4}, // a daily quota, 10 000 buckets
	} {
		l, err := ratelimit.NewLocal(tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range tc.keys {
			if _, err := l.Absolute().Inc(ctx, fmt.Sprint("client-", i), tc.limit, 1); err != nil {
				t.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perKey := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(tc.keys)
		l.Close(ctx)
		t.Logf("limit %v: %d bytes per key", tc.limit, perKey)
		if perKey > 2048 {
			t.Errorf("limit %v: %d bytes per key holding one request (1 M keys: %d MB)", tc.limit, perKey, perKey*1_000_000>>20)
		}
	}
}

// Local's exact bound holds on its own clock, wherever the window starts:
// also when the clock has sub-millisecond resolution (the system clock
// does). C admissions at 99.9 ms and C more 999.9 ms later are 2C in one
// window of length W.
func TestReview16_LocalBoundSubMillisecond(t *testing.T) {
	ctx := context.Background()
	const window = time.Second
	l, clk := newLocal(t, ratelimit.Options{Buckets: 10}) // buckets of 100 ms
	ten := ratelimit.PerSecond(10)
	clk.Advance(99*time.Millisecond + 900*time.Microsecond) // 99.9 ms into a bucket
	var at []time.Time
	for step := range 2 {
		for {
			d, err := l.Absolute().Inc(ctx, "k", ten, 1) // capacity 10
			if err != nil {
				t.Fatal(err)
			}
			if !d.Allowed {
				break
			}
			at = append(at, d.At)
		}
		if step == 0 {
			clk.Advance(window - 100*time.Microsecond)
		}
	}
	if worst := testkit.MaxInWindow(at, window); worst > 10 {
		t.Fatalf("%d admitted within %v (at %v and %v), capacity 10", worst, at[len(at)-1].Sub(at[0]), at[0].Format(".000000"), at[len(at)-1].Format(".000000"))
	}
}

// A Hybrid alone, RetryAfter as Decision.RetryAfter documents it: a lower
// bound while the instance's own increments are not pushed (the server
// counts an increment from the bucket it is pushed in, up to SyncInterval
// after the decision: unknown when deciding, so RetryAfter assumes the
// current bucket), and exact once they are: a retry a millisecond before
// RetryAfter is rejected, at RetryAfter admitted. Exact before the push
// would need the server to count an increment from the bucket of the
// decision, i.e. to trust the instance's estimate of the server's clock,
// which can only make the bound looser.
func TestReview16_HybridRetryAfterOneInstance(t *testing.T) {
	ctx := context.Background()
	clk := &manualClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := memory.New(memory.Options{Clock: clk})
	h := newHybrid(t, b, ratelimit.Options{Buckets: 10, SyncInterval: time.Hour, Clock: clk})
	ten := ratelimit.PerSecond(10) // buckets of 100 ms
	inc := func(what string, sync bool) ratelimit.Decision {
		t.Helper()
		if sync {
			if err := h.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
		d, err := h.Absolute().Inc(ctx, "k", ten, 1)
		if err != nil || d.Degraded != nil {
			t.Fatalf("%s: %+v, %v", what, d, err)
		}
		return d
	}
	clk.Advance(95 * time.Millisecond)
	if d, err := h.Absolute().Inc(ctx, "k", ten, 10); err != nil || !d.Allowed { // fills capacity 10
		t.Fatalf("%+v, %v", d, err)
	}
	d := inc("over capacity", false)
	if d.Allowed || d.RetryAfter <= 0 {
		t.Fatalf("over capacity: %+v", d)
	}
	start := clk.Now()
	clk.Advance(10 * time.Millisecond) // the sync interval: the push lands in the next bucket
	if err := h.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// A lower bound: never admitted before RetryAfter (here not at it
	// either: the push landed one bucket later).
	for _, at := range []time.Duration{d.RetryAfter / 2, d.RetryAfter - time.Millisecond, d.RetryAfter} {
		clk.Advance(start.Add(at).Sub(clk.Now()))
		if d2 := inc("before the first RetryAfter", true); d2.Allowed {
			t.Fatalf("admitted %v after a rejection that said RetryAfter %v", at, d.RetryAfter)
		}
	}
	// The increments are pushed: a rejection's RetryAfter is now exact,
	// whether the view is pulled again (a sync) or only ages.
	for _, sync := range []bool{true, false} {
		d = inc("after the push", true)
		if d.Allowed || d.RetryAfter <= time.Millisecond {
			t.Fatalf("after the push: %+v", d)
		}
		clk.Advance(d.RetryAfter - time.Millisecond)
		if d2 := inc("a millisecond before RetryAfter", sync); d2.Allowed || d2.RetryAfter != time.Millisecond {
			t.Fatalf("a millisecond before RetryAfter %v (sync %v): %+v; want rejected, RetryAfter 1ms", d.RetryAfter, sync, d2)
		}
		clk.Advance(time.Millisecond)
		if d2 := inc("at RetryAfter", sync); !d2.Allowed {
			t.Fatalf("retried after RetryAfter %v (sync %v): %+v", d.RetryAfter, sync, d2)
		}
		// Fill the window again for the next round.
		if d2, err := h.Absolute().Inc(ctx, "k", ten, remaining(t, h, ten)); err != nil || !d2.Allowed {
			t.Fatalf("refilling: %+v, %v", d2, err)
		}
		clk.Advance(10 * time.Millisecond)
		if err := h.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// remaining is what key k can still take under lim.
func remaining(t *testing.T, h *ratelimit.Hybrid, lim ratelimit.Limit) int64 {
	t.Helper()
	st, err := h.Absolute().Peek(context.Background(), "k", lim)
	if err != nil || st.Remaining < 1 {
		t.Fatalf("Peek: %+v, %v", st, err)
	}
	return st.Remaining
}

// A limiter nobody closes stops its background goroutine once it is
// collected, like every other primitive with a background loop.
func TestReview16_UnclosedLimiterGoroutineEnds(t *testing.T) {
	b := memory.New(memory.Options{})
	for name, mk := range map[string]func() any{
		"Local":  func() any { l, _ := ratelimit.NewLocal(ratelimit.Options{}); return l },
		"Redis":  func() any { r, _ := ratelimit.NewRedis(b, ratelimit.Options{}); return r },
		"Hybrid": func() any { h, _ := ratelimit.NewHybrid(b, ratelimit.Options{}); return h },
	} {
		base := runtime.NumGoroutine()
		mk()
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
			runtime.GC()
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > base {
			t.Errorf("%s: %d goroutines after the unclosed limiter was dropped, %d before", name, n, base)
		}
	}
}

// Many goroutines deciding on a few keys while the sweep drops idle keys
// (IdleAfter 1 ns), the loop syncs every millisecond, callers force syncs,
// syncs fail now and then (not applied), and Close ends it all: every
// admission reaches the server exactly once.
func TestReview16_HybridStress(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	h, err := ratelimit.NewHybrid(b, ratelimit.Options{SyncInterval: time.Millisecond, IdleAfter: time.Nanosecond, OnError: ratelimit.FailOpen})
	lim := ratelimit.PerMinute(60_000_000_000)
	if err != nil {
		t.Fatal(err)
	}
	const keys = 5
	var admitted [keys]atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := (g + i) % keys
				var d ratelimit.Decision
				var err error
				if i%3 == 0 {
					d, err = h.Suppressed().Inc(ctx, fmt.Sprint("k", k), lim, int64(i%4+1))
				} else {
					d, err = h.Absolute().Inc(ctx, fmt.Sprint("k", k), lim, int64(i%4+1))
				}
				if errors.Is(err, distkit.ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed || i%3 == 0 { // Suppressed counts what it is offered (far below any limit here)
					admitted[k].Add(int64(i%4 + 1))
				}
				if i%50 == 0 {
					time.Sleep(time.Duration(i%3) * time.Millisecond)
				}
			}
		}()
	}
	syncer := make(chan struct{})
	stopSyncer := make(chan struct{})
	go func() {
		defer close(syncer)
		for i := 0; ; i++ {
			select {
			case <-stopSyncer:
				return
			default:
			}
			if i%7 == 0 {
				b.FailNext(1, nil)
			}
			h.Sync(ctx)
			time.Sleep(500 * time.Microsecond)
		}
	}()
	time.Sleep(400 * time.Millisecond)
	close(stopSyncer)
	<-syncer
	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	b.FailNext(0, nil)
	if err := h.Close(closeCtx); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	r := testkit.NewRedisLimiter(t, b, ratelimit.Options{})
	for k := range keys {
		d, err := r.Absolute().Inc(ctx, fmt.Sprint("k", k), lim, 1)
		if err != nil {
			t.Fatal(err)
		}
		if counted := lim.N - 1 - d.Remaining; counted != admitted[k].Load() {
			t.Errorf("key %d: %d recorded by Hybrid deciders, %d counted on the server", k, admitted[k].Load(), counted)
		}
	}
}

// A period so long that the keys' TTL would overflow is refused, and the
// longest one allowed is enforced: never a TTL silently clamped to 1 ms
// (the server then forgets every admission and the Redis provider admits
// without limit).
func TestReview16_HugeWindowTTL(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, ratelimit.Options{Buckets: 1})
	for _, p := range w.providers(t) {
		if _, err := p.abs.Inc(ctx, "k", ratelimit.Per(5, 5e18), 1); !errors.Is(err, distkit.ErrInvalidOption) { // ~158 years
			t.Fatalf("%s: a period of 158 years: %v; want ErrInvalidOption", p.name, err)
		}
		admitted := 0
		for range 10 {
			p.before()
			if d, err := p.abs.Inc(ctx, "k", ratelimit.Per(5, ratelimit.MaxPeriod), 1); err != nil {
				t.Fatal(err)
			} else if d.Allowed {
				admitted++
			}
			w.clk.Advance(10 * time.Millisecond)
		}
		if admitted != 5 {
			t.Fatalf("%s: a period of MaxPeriod: admitted %d of 10 at capacity 5", p.name, admitted)
		}
	}
}

// Local on the system clock, many goroutines on a few keys while the sweep
// drops idle keys: every window of length W (any start, to the
// nanosecond) holds at most C admissions per key.
func TestReview16_LocalStressBound(t *testing.T) {
	ctx := context.Background()
	const window, capacity = 50 * time.Millisecond, 20
	l, err := ratelimit.NewLocal(ratelimit.Options{Buckets: 10, IdleAfter: time.Nanosecond}) // buckets of 5 ms
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	const keys = 4
	var mu sync.Mutex
	at := make([][]time.Time, keys)
	var wg sync.WaitGroup
	deadline := time.Now().Add(300 * time.Millisecond)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				k := (g + i) % keys
				d, err := l.Absolute().Inc(ctx, fmt.Sprint("k", k), ratelimit.Per(capacity, window), 1)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					mu.Lock()
					at[k] = append(at[k], d.At)
					mu.Unlock()
				}
				if i%16 == 0 {
					time.Sleep(time.Duration(i%5) * 100 * time.Microsecond)
				}
			}
		}()
	}
	wg.Wait()
	for k := range keys {
		if worst := testkit.MaxInWindow(at[k], window); worst > capacity {
			t.Errorf("key %d: %d admitted within %v, capacity %d", k, worst, window, capacity)
		}
	}
}

// Increments a Hybrid could not push while the backend was down are
// pushed when it is back, in the current bucket: those of a key unused
// for longer than the window have all left it by then and must not count
// again as if just admitted.
func TestReview16_HybridStalePendingAfterOutage(t *testing.T) {
	ctx := context.Background()
	clk := &manualClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := memory.New(memory.Options{Clock: clk})
	opts := ratelimit.Options{SyncInterval: time.Hour, Clock: clk}
	h := newHybrid(t, b, opts)
	ten := ratelimit.PerSecond(10)
	if d, err := h.Absolute().Inc(ctx, "k", ten, 1); err != nil || !d.Allowed { // first use: pulls
		t.Fatalf("%+v, %v", d, err)
	}
	b.FailNext(1<<30, nil) // down
	if d, err := h.Absolute().Inc(ctx, "k", ten, 9); err != nil || !d.Allowed {
		t.Fatalf("%+v, %v", d, err)
	}
	for range 50 { // 5 s of failed syncs; k unused
		h.Sync(ctx)
		clk.Advance(100 * time.Millisecond)
	}
	b.FailNext(0, nil) // back
	h.Sync(ctx)
	r := testkit.NewRedisLimiter(t, b, ratelimit.Options{})
	if d, err := r.Absolute().Inc(ctx, "k", ten, 10); err != nil || !d.Allowed {
		t.Fatalf("the server after the outage: %+v, %v; want the full capacity: the 10 admitted 5 s ago left the 1 s window long ago", d, err)
	}
}

// A key the server rejects, used once and then never again, stops
// costing I/O once what it holds has left the window (and can then be
// dropped): it is not retried forever.
func TestReview16_HybridIdleBadKeyStopsIO(t *testing.T) {
	ctx := context.Background()
	clk := &manualClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := memory.New(memory.Options{Clock: clk})
	cb := &countingBackend{Backend: b}
	h := newHybrid(t, cb, ratelimit.Options{SyncInterval: time.Hour, Clock: clk})
	ten := ratelimit.PerSecond(10)
	bad := keyspace.RateLimit("distkit", "bad")
	if _, err := b.EvalScript(ctx, testkit.WrongTypeScript, []string{bad.Counts}); err == nil {
		t.Fatal("WRONGTYPE script succeeded")
	}
	if d, err := h.Absolute().Inc(ctx, "bad", ten, 1); err != nil || d.Degraded == nil {
		t.Fatalf("bad key: %+v, %v", d, err)
	}
	var after int
	for i := range 300 { // 5 minutes, a sync every second
		clk.Advance(time.Second)
		h.Sync(ctx)
		if i == 2 {
			after = cb.perKey("bad")
		}
	}
	if n := cb.perKey("bad") - after; n > 0 {
		t.Fatalf("an idle quarantined key ran %d more scripts in the 5 minutes after its only request left the window", n)
	}
}

// A healthy key left unused for longer than the window is still synced
// (pulled) by the next round: its view must not stay the one of its last
// decision.
func TestReview16_HybridIdleHealthyKeyStillPulls(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, ratelimit.Options{})
	opts := ratelimit.Options{SyncInterval: time.Hour, Clock: w.clk}
	h := newHybrid(t, w.mem, opts)
	ten := ratelimit.PerSecond(10)
	if d, err := w.redis.Absolute().Inc(ctx, "k", ten, 10); err != nil || !d.Allowed {
		t.Fatalf("%+v, %v", d, err)
	}
	d, err := h.Absolute().Inc(ctx, "k", ten, 1)
	if err != nil || d.Allowed || d.RetryAfter <= 0 {
		t.Fatalf("over capacity: %+v, %v", d, err)
	}
	w.clk.Advance(d.RetryAfter + 200*time.Millisecond)
	if err := h.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err := h.Absolute().Inc(ctx, "k", ten, 1); err != nil || !d.Allowed {
		t.Fatalf("after RetryAfter and a sync: %+v, %v", d, err)
	}
}
