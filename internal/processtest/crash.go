package processtest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/instancecounter"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// CrashHarness is a testkit.Harness whose server can be killed (SIGKILL) and
// restarted with its persisted data (AOF, fsync always).
type CrashHarness interface {
	testkit.Harness
	Crash(t *testing.T)
	Restart(t *testing.T)
}

// RunCrash checks that what the primitives acknowledged survives a server
// crash in the middle of their traffic.
func RunCrash(t *testing.T, newHarness func(t *testing.T) CrashHarness) {
	t.Run("LaxKillMidFlush", func(t *testing.T) { testLaxCrash(t, newHarness(t)) })
	t.Run("InstanceLaxKillMidFlush", func(t *testing.T) { testICLaxCrash(t, newHarness(t)) })
	t.Run("RateLimitServerDown", func(t *testing.T) { testRLServerDown(t, newHarness(t)) })
}

func testLaxCrash(t *testing.T, h CrashHarness) {
	ctx := context.Background()
	p := testkit.Prefix(t)
	const instances = 3
	var accepted atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	laxes := make([]*counter.Lax, instances)
	for i := range laxes {
		laxes[i] = testkit.NewLax(t, h.NewBackend(t), counter.Options{Prefix: p, AllowedLag: 2 * time.Millisecond})
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := int64(1); !stop.Load(); n++ {
					d := n%7 + int64(g) - 2
					if _, err := laxes[i].Inc(ctx, "k", d); err != nil {
						t.Error(err)
						return
					}
					accepted.Add(d)
					if n%64 == 0 {
						time.Sleep(100 * time.Microsecond)
					}
				}
			}()
		}
	}
	crashMidway(t, h, &stop, &wg)
	for i, l := range laxes {
		closeWithin(t, i, l.Close)
	}
	got, err := testkit.NewStrict(t, h.NewBackend(t), p).Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if got != accepted.Load() {
		t.Fatalf("after kill -9 and restart: remote %d, accepted %d (diff %d)", got, accepted.Load(), got-accepted.Load())
	}
	t.Logf("accepted %d, remote %d: exact", accepted.Load(), got)
}

// testRLServerDown: with the server stopped, each failure policy does what
// it says, the decisions say they are degraded (with a nil error), and
// decisions recover once it is back.
func testRLServerDown(t *testing.T, h CrashHarness) {
	ctx := context.Background()
	p := testkit.Prefix(t)
	b := testkit.Open(t, h)
	opts := ratelimit.Options{Prefix: p, SyncInterval: 5 * time.Millisecond}
	lim := ratelimit.PerSecond(100)
	closed := testkit.NewRedisLimiter(t, b, opts)
	openOpts := opts
	openOpts.OnError = ratelimit.FailOpen
	open := testkit.NewRedisLimiter(t, b, openOpts)
	hyb := testkit.NewHybridLimiter(t, b, opts)
	if ok, err := hyb.Absolute().Allow(ctx, "k", lim); !ok || err != nil {
		t.Fatalf("hybrid before the crash: %v, %v", ok, err)
	}
	h.Crash(t)
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if d, err := closed.Absolute().Inc(cctx, "k", lim, 1); d.Allowed || err != nil || d.Degraded == nil {
		t.Fatalf("FailClosed with the server down: %+v, %v", d, err)
	}
	if d, err := open.Absolute().Inc(cctx, "k", lim, 1); !d.Allowed || err != nil || d.Degraded == nil {
		t.Fatalf("FailOpen with the server down: %+v, %v", d, err)
	}
	testkit.Eventually(t, 3*time.Second, "Hybrid decides locally and says it is degraded", func() bool {
		d, err := hyb.Absolute().Inc(ctx, "k", lim, 1)
		return d.Allowed && err == nil && d.Degraded != nil
	})
	h.Restart(t)
	testkit.Eventually(t, 10*time.Second, "decisions recover", func() bool {
		d, err := closed.Absolute().Inc(ctx, "k", lim, 1)
		return d.Allowed && err == nil && d.Degraded == nil
	})
	testkit.Eventually(t, 10*time.Second, "Hybrid syncs again", func() bool {
		d, err := hyb.Absolute().Inc(ctx, "k", lim, 1)
		return err == nil && d.Degraded == nil
	})
}

// testICLaxCrash: instance-aware Lax counters of two instances keep
// counting while the server is killed (AOF, fsync always) and restarted;
// after Close (keeping the slices) the cumulative is exactly what was
// accepted: nothing lost, no batch applied twice.
func testICLaxCrash(t *testing.T, h CrashHarness) {
	ctx := context.Background()
	p := testkit.Prefix(t)
	var accepted atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	var ls []*instancecounter.Lax
	for i := range 2 {
		l, err := instancecounter.NewLax(h.NewBackend(t), instancecounter.Options{Prefix: p,
			InstanceID: "i" + string(rune('0'+i)), FlushInterval: 2 * time.Millisecond, KeepSlicesOnClose: true})
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := int64(1); !stop.Load(); n++ {
				if _, _, err := l.Inc(ctx, "k", n%5); err == nil {
					accepted.Add(n % 5)
				}
				if n%64 == 0 {
					time.Sleep(100 * time.Microsecond)
				}
			}
		}()
	}
	crashMidway(t, h, &stop, &wg)
	for i, l := range ls {
		closeWithin(t, i, l.Close)
	}
	s, err := instancecounter.NewStrict(h.NewBackend(t), instancecounter.Options{Prefix: p, InstanceID: "reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	got, _, err := s.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if got != accepted.Load() {
		t.Fatalf("after kill -9 and restart: cumulative %d, accepted %d", got, accepted.Load())
	}
	t.Logf("accepted %d, cumulative %d: exact", accepted.Load(), got)
}

// crashMidway lets the writers run, kills the server while they do (so
// flushes in flight fail, some with an unknown outcome), restarts it from
// its AOF, lets them run again, then stops them.
func crashMidway(t *testing.T, h CrashHarness, stop *atomic.Bool, wg *sync.WaitGroup) {
	time.Sleep(150 * time.Millisecond)
	h.Crash(t)
	time.Sleep(150 * time.Millisecond)
	h.Restart(t)
	time.Sleep(150 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
}

// closeWithin closes instance i, which must flush everything within 15 s.
func closeWithin(t *testing.T, i int, closeFn func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := closeFn(ctx); err != nil {
		t.Fatalf("Close of instance %d: %v", i, err)
	}
}
