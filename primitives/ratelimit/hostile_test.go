package ratelimit_test

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
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// world is every provider over one manual clock: Local, Redis on the
// memory backend (whose server time is the same clock) and a Hybrid on
// that backend that syncs only when told, each on its own keys.
type world struct {
	clk    *manualClock
	mem    *memory.Backend
	local  *ratelimit.Local
	redis  *ratelimit.Redis
	hybrid *ratelimit.Hybrid
}

func newWorld(t *testing.T, opts ratelimit.Options) *world {
	t.Helper()
	w := &world{clk: &manualClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}}
	opts.Clock = w.clk
	w.mem = memory.New(memory.Options{Clock: w.clk})
	var err error
	if w.local, err = ratelimit.NewLocal(opts); err != nil {
		t.Fatal(err)
	}
	if w.redis, err = ratelimit.NewRedis(w.mem, opts); err != nil {
		t.Fatal(err)
	}
	hopts := opts
	hopts.SyncInterval = time.Hour
	hopts.Prefix = "hybrid" // its own keys: Redis' traffic is not its own
	if w.hybrid, err = ratelimit.NewHybrid(w.mem.Connect(), hopts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		w.local.Close(ctx)
		w.redis.Close(ctx)
		w.hybrid.Close(ctx)
	})
	return w
}

type provider struct {
	name string
	abs  *ratelimit.Absolute
	sup  *ratelimit.Suppressed
	// before runs ahead of every decision (Hybrid: a sync, so that it
	// decides against the current global count).
	before func()
}

func (w *world) providers(t *testing.T) []provider {
	sync := func() {
		if err := w.hybrid.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return []provider{
		{"Local", w.local.Absolute(), w.local.Suppressed(), func() {}},
		{"Redis", w.redis.Absolute(), w.redis.Suppressed(), func() {}},
		{"Hybrid", w.hybrid.Absolute(), w.hybrid.Suppressed(), sync},
	}
}

// Item 1: a huge n never wraps the window total around.
func TestHugeNeverBypasses(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, ratelimit.Options{})
	for _, p := range w.providers(t) {
		for _, strat := range []string{"abs", "sup"} {
			t.Run(p.name+"/"+strat, func(t *testing.T) {
				key := "k-" + strat
				inc := func(n int64) ratelimit.Decision {
					p.before()
					var d ratelimit.Decision
					var err error
					if strat == "abs" {
						d, err = p.abs.Inc(ctx, key, 1, n) // capacity 60 per minute
					} else {
						d, err = p.sup.Inc(ctx, key, 1, n)
					}
					if err != nil {
						t.Fatalf("Inc(%d): %v", n, err)
					}
					return d
				}
				if d := inc(1); !d.Allowed {
					t.Fatalf("first request: %+v", d)
				}
				for _, n := range []int64{math.MaxInt64, math.MaxInt64 - 1, 1 << 62, 1e17, 1 << 53} {
					if d := inc(n); d.Allowed {
						t.Fatalf("Inc(%d) admitted against a capacity of 60: %+v", n, d)
					}
				}
				admitted := 1
				for range 1000 {
					if inc(1).Allowed {
						admitted++
					}
				}
				if strat == "abs" && admitted != 60 {
					t.Fatalf("admitted %d of 1001 against a capacity of 60", admitted)
				}
				if strat == "sup" && admitted > 60 {
					t.Fatalf("Suppressed admitted %d of 1001 against a hard limit of 60", admitted)
				}
			})
		}
	}
}

// Item 3: every provider computes one capacity, also for rates whose
// float64 product with the window lands just below an integer (2.05/s ×
// 60 s = 122.99999999999999 in float64, 123 in decimal), and Remaining
// says what the next decision does.
func TestFractionalCapacityAgrees(t *testing.T) {
	ctx := context.Background()
	for _, rate := range []float64{2.05, 4.1, 16.65, 0.7, 2.5} {
		w := newWorld(t, ratelimit.Options{})
		want := map[float64]int{2.05: 123, 4.1: 246, 16.65: 999, 0.7: 42, 2.5: 150}[rate]
		for _, p := range w.providers(t) {
			admitted := 0
			var last ratelimit.Decision
			for i := range want + 5 {
				p.before()
				d, err := p.abs.Inc(ctx, "k", rate, 1)
				if err != nil {
					t.Fatal(err)
				}
				if i > 0 && last.Remaining > 0 != d.Allowed {
					t.Fatalf("%s rate %v: Remaining %d, then the next request allowed=%v", p.name, rate, last.Remaining, d.Allowed)
				}
				if d.Allowed {
					admitted++
				}
				last = d
			}
			if admitted != want {
				t.Errorf("%s: rate %v over 60 s admitted %d, want %d", p.name, rate, admitted, want)
			}
		}
	}
}

// Item 4: IdleAfter shorter than the window never forgets admissions
// still in the window.
func TestIdleAfterKeepsAdmissions(t *testing.T) {
	ctx := context.Background()
	l, clk := newLocal(t, ratelimit.Options{IdleAfter: 10 * time.Millisecond})
	a := l.Absolute()
	for i := range 60 {
		if ok, err := a.Allow(ctx, "k", 1); !ok || err != nil {
			t.Fatalf("request %d: %v, %v", i, ok, err)
		}
	}
	clk.Advance(2 * time.Second) // idle past IdleAfter, well within the window
	time.Sleep(100 * time.Millisecond)
	if ok, _ := a.Allow(ctx, "k", 1); ok {
		t.Fatal("admitted after IdleAfter although the window still holds 60 of 60")
	}
}

// Item 4: a decision racing the idle sweep is never recorded into a
// dropped key: on Hybrid, every admission reaches the server.
func TestHybridSweepRaceLosesNothing(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	opts := ratelimit.Options{Window: time.Minute, SyncInterval: time.Millisecond, IdleAfter: time.Nanosecond}
	h, err := ratelimit.NewHybrid(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	var admitted [4]atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(500 * time.Millisecond)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				k := (g + i) % 4
				if ok, _ := h.Absolute().Allow(ctx, fmt.Sprint("k", k), 1e9); ok {
					admitted[k].Add(1)
				}
				time.Sleep(time.Duration(i%3) * time.Millisecond) // keys go idle between syncs
			}
		}()
	}
	wg.Wait()
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r := testkit.NewRedisLimiter(t, b, ratelimit.Options{Window: time.Minute})
	for k := range admitted {
		d, err := r.Absolute().Inc(ctx, fmt.Sprint("k", k), 1e9, 1)
		if err != nil {
			t.Fatal(err)
		}
		if counted := int64(1e9*60) - 1 - d.Remaining; counted != admitted[k].Load() {
			t.Errorf("key %d: Hybrid admitted %d, the server counted %d: admissions recorded into swept keys were lost", k, admitted[k].Load(), counted)
		}
	}
}

// Item 5: no window of length W, wherever it starts, holds more than C
// admissions: a burst at the end of a bucket is still counted when the
// next burst comes.
func TestExactWindow(t *testing.T) {
	ctx := context.Background()
	const window, bucket = time.Second, 100 * time.Millisecond
	w := newWorld(t, ratelimit.Options{Window: window, Bucket: bucket})
	w.clk.Advance(99 * time.Millisecond) // the last ms of a bucket
	ps := w.providers(t)
	at := make([][]time.Time, len(ps))
	for ms := 0; ms < 3000; ms++ {
		for i, p := range ps {
			for {
				p.before()
				d, err := p.abs.Inc(ctx, "k", 10, 1) // capacity 10
				if err != nil {
					t.Fatal(err)
				}
				if !d.Allowed {
					break
				}
				at[i] = append(at[i], w.clk.Now())
			}
		}
		w.clk.Advance(time.Millisecond)
	}
	for i, p := range ps {
		worst := testkit.MaxInWindow(at[i], window)
		t.Logf("%s: %d admitted in 3 s of bursts at bucket ends, worst %v window (any start) %d, capacity 10", p.name, len(at[i]), window, worst)
		if worst > 10 {
			t.Errorf("%s: a %v window holds %d admissions, capacity 10", p.name, window, worst)
		}
	}
}

// Item 6: a degraded decision is not an error; closed limiters say so; a
// rate below one request per window is invalid; Hybrid tells a rejected
// caller when to retry.
func TestDegradedIsNotAnError(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	open, err := ratelimit.NewRedis(b, ratelimit.Options{OnError: ratelimit.FailOpen})
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close(ctx)
	b.FailNext(1, nil)
	if d, err := open.Absolute().Inc(ctx, "k", 10, 1); err != nil || !d.Allowed || !errors.Is(d.Degraded, distkit.ErrNotApplied) {
		t.Fatalf("FailOpen with the backend down: %+v, %v; want admitted without an error, marked degraded", d, err)
	}
	if d, err := open.Absolute().Inc(ctx, "k", 10, 1); err != nil || d.Degraded != nil {
		t.Fatalf("FailOpen with the backend back: %+v, %v", d, err)
	}
}

func TestClosedLimiters(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	r, _ := ratelimit.NewRedis(b, ratelimit.Options{})
	h, _ := ratelimit.NewHybrid(b, ratelimit.Options{})
	l, _ := ratelimit.NewLocal(ratelimit.Options{})
	for name, p := range map[string]interface {
		Absolute() *ratelimit.Absolute
		Close(context.Context) error
	}{"Redis": r, "Hybrid": h, "Local": l} {
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if ok, err := p.Absolute().Allow(ctx, "k", 10); ok || !errors.Is(err, distkit.ErrClosed) {
			t.Errorf("%s after Close: %v, %v; want ErrClosed", name, ok, err)
		}
	}
}

func TestRateBelowOnePerWindow(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, ratelimit.Options{})
	for _, p := range w.providers(t) {
		if _, err := p.abs.Inc(ctx, "k", 0.01, 1); !errors.Is(err, distkit.ErrInvalidOption) { // 0.6 per minute
			t.Errorf("%s: rate 0.01/s over 60 s: %v; want ErrInvalidOption", p.name, err)
		}
		if _, err := p.abs.Inc(ctx, "k", 1.0/60, 1); err != nil { // exactly one per minute
			t.Errorf("%s: rate 1/60 per second over 60 s: %v", p.name, err)
		}
	}
}

func TestHybridRetryAfter(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, ratelimit.Options{Window: 10 * time.Second, Bucket: time.Second})
	p := w.providers(t)[2]
	for range 5 {
		p.before()
		p.abs.Inc(ctx, "k", 1, 2) // capacity 10
		w.clk.Advance(time.Second)
	}
	p.before()
	d, err := p.abs.Inc(ctx, "k", 1, 3)
	if err != nil || d.Allowed {
		t.Fatalf("over capacity: %+v, %v", d, err)
	}
	// The first 2 leave when their bucket's end leaves the window (10 s
	// after 0.999 s, or 10 s after 0 s with bucket-aligned windows); 3 need
	// the second bucket too.
	if d.RetryAfter <= 0 || d.RetryAfter > 7*time.Second {
		t.Fatalf("Hybrid RetryAfter %v; want the time until two buckets have left", d.RetryAfter)
	}
}
