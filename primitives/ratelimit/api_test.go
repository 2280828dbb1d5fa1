package ratelimit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// Peek, SetIf (both histories) and Reset on every provider, on one clock:
// the same answers, and decisions that follow them.
func TestPeekSetIfResetEveryProvider(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, ratelimit.Options{Buckets: 10, HardLimitFactor: 2})
	admins := map[string]interface {
		Reset(context.Context, string) error
		SetIf(context.Context, string, ratelimit.Limit, distkit.Comparator, int64, ratelimit.History) (int64, int64, error)
	}{"Local": w.local, "Redis": w.redis, "Hybrid": w.hybrid}
	lim := ratelimit.PerSecond(10) // buckets of 100 ms
	for _, p := range w.providers(t) {
		a := admins[p.name]
		step := func(what string, got, want any) {
			t.Helper()
			if got != want {
				t.Fatalf("%s: %s: %v, want %v", p.name, what, got, want)
			}
		}
		p.before()
		st, err := p.abs.Peek(ctx, "k", lim)
		step("Peek of an unused key", st, ratelimit.State{Limit: 10, Remaining: 10, At: st.At})
		step("error", err, nil)
		p.abs.Inc(ctx, "k", lim, 4)
		p.before()
		w.clk.Advance(300 * time.Millisecond)
		p.before()
		p.abs.Inc(ctx, "k", lim, 4)
		p.before()
		st, _ = p.abs.Peek(ctx, "k", lim)
		step("Peek count", st.Count, int64(8))
		step("Peek remaining", st.Remaining, int64(2))
		step("Peek release (the first 4 leave 1 s after their bucket ends)", st.ReleaseAfter, 799*time.Millisecond)
		sst, _ := p.sup.Peek(ctx, "k", lim)
		step("Suppressed Peek limit", sst.Limit, int64(20))
		step("Suppressed Peek remaining", sst.Remaining, int64(12))
		// Keep: lowering to 3 takes the newest 4 and 1 of the oldest.
		cur, prev, err := a.SetIf(ctx, "k", lim, distkit.Ge(8), 3, ratelimit.KeepHistory)
		step("SetIf keep", [3]any{cur, prev, err}, [3]any{int64(3), int64(8), nil})
		p.before()
		st, _ = p.abs.Peek(ctx, "k", lim)
		step("after keep: count", st.Count, int64(3))
		step("after keep: the 3 left are the oldest", st.ReleaseAfter, 799*time.Millisecond)
		cur, prev, _ = a.SetIf(ctx, "k", lim, distkit.Eq(8), 0, ratelimit.KeepHistory)
		step("SetIf not matched", [2]int64{cur, prev}, [2]int64{3, 3})
		// Replace: the count is dated now.
		cur, prev, _ = a.SetIf(ctx, "k", lim, distkit.Always(), 10, ratelimit.ReplaceHistory)
		step("SetIf replace", [2]int64{cur, prev}, [2]int64{10, 3})
		p.before()
		d, _ := p.abs.Inc(ctx, "k", lim, 1)
		step("after replace: rejected", d.Allowed, false)
		step("after replace: retry in a full window", d.RetryAfter, 1099*time.Millisecond)
		if err := a.Reset(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		p.before()
		d, _ = p.abs.Inc(ctx, "k", lim, 10)
		step("after Reset: the whole limit", d.Allowed, true)
		p.before()
	}
}

// Wait on Local (system clock): blocks until the request fits, refuses at
// once when the deadline comes first or n never fits, ends with ctx.
func TestWaitLocal(t *testing.T) {
	ctx := context.Background()
	l, err := ratelimit.NewLocal(ratelimit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	a := l.Absolute()
	lim := ratelimit.Every(100 * time.Millisecond)
	if d, err := a.Wait(ctx, "k", lim, 1); err != nil || !d.Allowed {
		t.Fatalf("first Wait: %+v, %v", d, err)
	}
	start := time.Now()
	if d, err := a.Wait(ctx, "k", lim, 1); err != nil || !d.Allowed || time.Since(start) < 90*time.Millisecond {
		t.Fatalf("second Wait: %+v, %v after %v; want admitted after about 100 ms", d, err, time.Since(start))
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	start = time.Now()
	if d, err := a.Wait(short, "k", lim, 1); !errors.Is(err, distkit.ErrTimeout) || d.RetryAfter <= 20*time.Millisecond || time.Since(start) > 15*time.Millisecond {
		t.Fatalf("Wait past the deadline: %+v, %v after %v; want ErrTimeout at once", d, err, time.Since(start))
	}
	if _, err := a.Wait(ctx, "k", lim, 2); !errors.Is(err, distkit.ErrInvalidOption) {
		t.Fatalf("Wait for more than the limit: %v", err)
	}
	cctx, cancel2 := context.WithCancel(ctx)
	time.AfterFunc(10*time.Millisecond, cancel2)
	if d, err := a.Wait(cctx, "k", lim, 1); !errors.Is(err, context.Canceled) || d.Allowed || d.RetryAfter <= 0 {
		t.Fatalf("Wait cancelled: %+v, %v; want the latest rejection and ctx's error", d, err)
	}
	// Concurrent waiters: each admitted once, one per 100 ms.
	var got [3]time.Time
	done := make(chan int, 3)
	for i := range 3 {
		go func() {
			if _, err := a.Wait(ctx, "c", lim, 1); err != nil {
				t.Error(err)
			}
			got[i] = time.Now()
			done <- i
		}()
	}
	for range 3 {
		<-done
	}
	first, last := got[0], got[0]
	for _, g := range got {
		if g.Before(first) {
			first = g
		}
		if g.After(last) {
			last = g
		}
	}
	if span := last.Sub(first); span < 180*time.Millisecond {
		t.Fatalf("3 waiters on 1 per 100 ms admitted within %v", span)
	}
}
