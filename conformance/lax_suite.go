package conformance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/counterscript"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/counter"
)

func runLaxCounter(t *testing.T, newHarness NewHarness) {
	t.Run("LocalViewAndRefresh", func(t *testing.T) { testLaxView(t, newHarness(t)) })
	t.Run("BackgroundFlush", func(t *testing.T) { testLaxBackground(t, newHarness(t)) })
	t.Run("PendingAndFlush", func(t *testing.T) { testLaxPending(t, newHarness(t)) })
	t.Run("TwoInstancesConverge", func(t *testing.T) { testLaxConverge(t, newHarness(t)) })
	t.Run("Concurrent64", func(t *testing.T) { testLaxConcurrent(t, newHarness(t)) })
	t.Run("CloseWhileUnreachable", func(t *testing.T) { testLaxCloseUnreachable(t, newHarness(t)) })
	t.Run("Closed", func(t *testing.T) { testLaxClosed(t, newHarness(t)) })
	t.Run("InvalidInput", func(t *testing.T) { testLaxInvalid(t, newHarness(t)) })
	t.Run("RejectedIncNeverFlushed", func(t *testing.T) { testLaxRejectedInc(t, newHarness(t)) })
	t.Run("KeyErrorsIsolated", func(t *testing.T) { testLaxKeyErrors(t, newHarness(t)) })
	t.Run("CloseWhileBackgroundFlushHangs", func(t *testing.T) { testLaxCloseHang(t, newHarness(t), false) })
	t.Run("CloseWhileOwnFlushHangs", func(t *testing.T) { testLaxCloseHang(t, newHarness(t), true) })
	t.Run("PendingWhileFlushHangs", func(t *testing.T) { testLaxPendingHang(t, newHarness(t)) })
	t.Run("GetDuringOutage", func(t *testing.T) { testLaxGetOutage(t, newHarness(t)) })
	t.Run("ExtremeViews", func(t *testing.T) { testLaxExtremes(t, newHarness(t)) })
	t.Run("ClearAndDelDropEntries", func(t *testing.T) { testLaxClearDrops(t, newHarness(t)) })
	t.Run("IdleKeysEvicted", func(t *testing.T) { testLaxIdle(t, newHarness(t)) })
	t.Run("ResendRefused", func(t *testing.T) { testLaxResendRefused(t, newHarness(t)) })
}

func newLaxOpts(t *testing.T, b backend.Backend, opts counter.Options) *counter.Lax {
	t.Helper()
	return testkit.NewLax(t, b, opts)
}

// eventually polls cond every 5 ms until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, d, what, cond)
}

func testLaxView(t *testing.T, h Harness) {
	ctx := context.Background()
	b := open(t, h)
	p := prefix(t)
	lax := newLaxOpts(t, b, counter.Options{Prefix: p, AllowedLag: time.Hour}) // no background flush
	strict := newStrict(t, open(t, h), p)
	n, err := lax.Inc(ctx, "k", 5)
	want(t, "Inc returns the local view", n, err, 5)
	n, err = strict.Get(ctx, "k")
	want(t, "remote before any flush", n, err, 0)
	if err := lax.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	n, err = strict.Get(ctx, "k")
	want(t, "remote after Flush", n, err, 5)
	strict.Inc(ctx, "k", 100) // another process
	n, err = lax.Inc(ctx, "k", 1)
	want(t, "local view before refresh (remote as last seen + pending)", n, err, 6)

	lag := 50 * time.Millisecond
	lax2 := newLaxOpts(t, b, counter.Options{Prefix: p, AllowedLag: lag})
	n, err = lax2.Get(ctx, "k")
	want(t, "Get of a new instance reads the remote", n, err, 105)
	strict.Inc(ctx, "k", 1000)
	time.Sleep(lag + 10*time.Millisecond)
	n, err = lax2.Get(ctx, "k")
	want(t, "Get refreshes a remote part older than AllowedLag", n, err, 1105)
}

func testLaxBackground(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	lax := newLaxOpts(t, open(t, h), counter.Options{Prefix: p, AllowedLag: 10 * time.Millisecond})
	strict := newStrict(t, open(t, h), p)
	for range 3 {
		lax.Inc(ctx, "k", 1)
	}
	eventually(t, 3*time.Second, "background flush", func() bool {
		n, err := strict.Get(ctx, "k")
		return err == nil && n == 3
	})
}

func testLaxPending(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	lax := newLaxOpts(t, open(t, h), counter.Options{Prefix: p, AllowedLag: time.Hour})
	lax.Inc(ctx, "a", 5)
	lax.Dec(ctx, "b", 2)
	lax.Inc(ctx, "c", 1)
	lax.Dec(ctx, "c", 1)
	if got := fmt.Sprint(lax.Pending()); got != "map[a:5 b:-2]" {
		t.Fatalf("Pending = %s, want map[a:5 b:-2]", got)
	}
	if err := lax.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := lax.Pending(); len(got) != 0 {
		t.Fatalf("Pending after Flush = %v", got)
	}
	vals, err := newStrict(t, open(t, h), p).GetAll(ctx, "a", "b", "c")
	if err != nil || fmt.Sprint(vals) != "[5 -2 0]" {
		t.Fatalf("remote: %v, %v", vals, err)
	}
}

func testLaxConverge(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	l1 := newLaxOpts(t, open(t, h), counter.Options{Prefix: p, AllowedLag: 5 * time.Millisecond})
	l2 := newLaxOpts(t, open(t, h), counter.Options{Prefix: p, AllowedLag: 7 * time.Millisecond})
	var wg sync.WaitGroup
	for i, l := range []*counter.Lax{l1, l1, l2, l2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 300 {
				l.Inc(ctx, "k", int64(i+1))
				if j%50 == 0 {
					time.Sleep(time.Millisecond) // let flushes interleave
				}
			}
		}()
	}
	wg.Wait()
	for _, l := range []*counter.Lax{l1, l2} {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := l.Close(cctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	n, err := newStrict(t, open(t, h), p).Get(ctx, "k")
	want(t, "sum after Close", n, err, 300*(1+2+3+4))
}

func testLaxConcurrent(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	lax := newLaxOpts(t, open(t, h), counter.Options{Prefix: p})
	const workers, each = 64, 200
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := lax.Inc(ctx, fmt.Sprintf("k%d", i%4), 1); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := lax.Close(cctx); err != nil {
		t.Fatal(err)
	}
	vals, err := newStrict(t, open(t, h), p).GetAll(ctx, "k0", "k1", "k2", "k3")
	if err != nil || fmt.Sprint(vals) != fmt.Sprint([]int64{3200, 3200, 3200, 3200}) {
		t.Fatalf("totals: %v, %v; want 3200 each", vals, err)
	}
}

func testLaxCloseUnreachable(t *testing.T, h Harness) {
	ctx := context.Background()
	b := h.NewBackend(t)
	lax := newLaxOpts(t, b, counter.Options{Prefix: prefix(t), AllowedLag: time.Hour})
	lax.Inc(ctx, "k", 5)
	lax.Inc(ctx, "j", -1)
	b.Close() // the backend is gone: every flush fails, not applied
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := lax.Close(cctx)
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Close took %v with a 200 ms context", el)
	}
	var ue *counter.UnflushedError
	if !errors.As(err, &ue) || !errors.Is(err, distkit.ErrNotApplied) {
		t.Fatalf("Close: %v; want an UnflushedError wrapping ErrNotApplied", err)
	}
	if fmt.Sprint(ue.Pending) != "map[j:-1 k:5]" {
		t.Fatalf("reported pending %v, want map[j:-1 k:5]", ue.Pending)
	}
}

func testLaxClosed(t *testing.T, h Harness) {
	ctx := context.Background()
	lax := newLaxOpts(t, open(t, h), counter.Options{Prefix: prefix(t)})
	if err := lax.Close(ctx); err != nil {
		t.Fatal(err)
	}
	calls := map[string]error{}
	_, calls["Inc"] = lax.Inc(ctx, "k", 1)
	_, calls["Get"] = lax.Get(ctx, "k")
	_, calls["Set"] = lax.Set(ctx, "k", 1)
	_, _, calls["IncIf"] = lax.IncIf(ctx, "k", distkit.Always(), 1)
	_, calls["GetAll"] = lax.GetAll(ctx, "k")
	calls["Clear"] = lax.Clear(ctx)
	for name, err := range calls {
		if !errors.Is(err, distkit.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if err := lax.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func testLaxInvalid(t *testing.T, h Harness) {
	ctx := context.Background()
	b := open(t, h)
	p := prefix(t)
	lax := newLaxOpts(t, b, counter.Options{Prefix: p, AllowedLag: time.Hour})
	if _, err := lax.Inc(ctx, strings.Repeat("k", distkit.MaxKeyLen+1), 1); !errors.Is(err, distkit.ErrInvalidKey) {
		t.Fatalf("Inc bad key: %v", err)
	}
	if _, err := lax.Get(ctx, ""); !errors.Is(err, distkit.ErrInvalidKey) {
		t.Fatalf("Get empty key: %v", err)
	}
	if p := lax.Pending(); len(p) != 0 {
		t.Fatalf("rejected Inc left pending %v", p)
	}
	for _, o := range []counter.Options{{AllowedLag: time.Microsecond}, {AllowedLag: -1}, {DedupTTL: time.Millisecond}, {Prefix: strings.Repeat("p", distkit.MaxKeyLen+1)}} {
		if _, err := counter.NewLax(b, o); !errors.Is(err, distkit.ErrInvalidOption) && !errors.Is(err, distkit.ErrInvalidKey) {
			t.Fatalf("NewLax(%+v): %v, want ErrInvalidOption/ErrInvalidKey", o, err)
		}
	}
	lax.Set(ctx, "max", 1<<62)
	lax.Inc(ctx, "max", 1<<62-1)
	lax.Inc(ctx, "max", 1<<62) // passes MaxInt64 locally
	if _, err := lax.Inc(ctx, "max", 1<<62); !errors.Is(err, distkit.ErrOverflow) {
		t.Fatalf("local view overflow: %v", err)
	}
}

// A rejected Inc (the local view would overflow) must never reach the
// backend: not even a flush that runs while it is being rejected may see
// its delta. The flusher used to snapshot a speculatively added delta, get
// an overflow from the backend and set the key aside for good, so that
// later acknowledged Incs of the key never reached the backend. A bounded
// stress loop: rejecting goroutines against a flushing one.
func testLaxRejectedInc(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	lax := newLaxOpts(t, open(t, h), counter.Options{Prefix: p, AllowedLag: time.Millisecond})
	const start = math.MaxInt64 - 10
	lax.Inc(ctx, "k", 1)
	if _, err := lax.Set(ctx, "k", start); err != nil { // the local view knows the remote value
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if _, err := lax.Inc(ctx, "k", 100); !errors.Is(err, distkit.ErrOverflow) {
					t.Errorf("Inc past MaxInt64: %v, want ErrOverflow", err)
					return
				}
			}
		}()
	}
	var flushErr error
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline) && flushErr == nil; {
		flushErr = lax.Flush(ctx)
	}
	stop.Store(true)
	wg.Wait()
	if flushErr != nil {
		t.Errorf("a flush while Incs were being rejected failed: %v", flushErr)
	}
	n, err := lax.Inc(ctx, "k", -1)
	want(t, "acknowledged Inc after the rejected ones", n, err, start-1)
	if err := lax.Flush(ctx); err != nil {
		t.Fatalf("Flush after an acknowledged Inc: %v (a rejected Inc poisoned the key)", err)
	}
	n, err = newStrict(t, open(t, h), p).Get(ctx, "k")
	want(t, "remote", n, err, start-1)
}

// One key whose delta the backend refuses (overflow, a value that is not
// an integer) is reported on that key and set aside; every other key keeps
// flushing, and the key recovers when the cause goes away.
func testLaxKeyErrors(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	b := open(t, h)
	lax := newLaxOpts(t, b, counter.Options{Prefix: p, AllowedLag: time.Hour})
	other := newStrict(t, open(t, h), p)
	if _, err := other.Set(ctx, "big", math.MaxInt64-5); err != nil {
		t.Fatal(err)
	}
	if _, err := b.EvalScript(ctx, testkit.HSetScript, []string{keyspace.CounterHash(p)}, keyspace.CounterField("bad"), "not a number"); err != nil {
		t.Fatal(err)
	}
	lax.Inc(ctx, "big", 10)
	lax.Inc(ctx, "bad", 1)
	lax.Inc(ctx, "ok", 1)
	err := lax.Flush(ctx)
	var ue *counter.UnflushedError
	if !errors.As(err, &ue) || !errors.Is(err, distkit.ErrOverflow) {
		t.Fatalf("Flush: %v; want an *UnflushedError naming the keys, matching ErrOverflow", err)
	}
	if got := fmt.Sprint(ue.Pending); got != "map[bad:1 big:10]" {
		t.Errorf("UnflushedError.Pending = %s, want map[bad:1 big:10]", got)
	}
	if n, err := other.Get(ctx, "ok"); err != nil || n != 1 {
		t.Fatalf("remote ok = %d, %v; want 1: one key's error held back the others", n, err)
	}
	if got := fmt.Sprint(lax.Pending()); got != "map[bad:1 big:10]" {
		t.Fatalf("Pending = %s, want map[bad:1 big:10]", got)
	}
	// The causes go away: another process makes room, and overwrites the
	// garbage. An explicit Flush retries the keys at once.
	if _, err := other.Dec(ctx, "big", 100); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Set(ctx, "bad", 5); err != nil {
		t.Fatal(err)
	}
	if err := lax.Flush(ctx); err != nil {
		t.Fatalf("Flush after the causes went away: %v", err)
	}
	vals, err := other.GetAll(ctx, "big", "bad", "ok")
	if err != nil || fmt.Sprint(vals) != fmt.Sprint([]int64{math.MaxInt64 - 95, 6, 1}) {
		t.Fatalf("remote = %v, %v; want [%d 6 1]", vals, err, int64(math.MaxInt64-95))
	}
	if p := lax.Pending(); len(p) != 0 {
		t.Fatalf("Pending after recovery = %v", p)
	}
}

// Close returns within its context while a flush hangs on a backend that
// does not answer (and ignores contexts), and reports the unflushed
// remainder; once the backend answers again, a second Close finishes
// without counting anything twice. background: the hanging flush is the
// background flusher's; otherwise it is Close's own final flush.
func testLaxCloseHang(t *testing.T, h Harness, own bool) {
	ctx := context.Background()
	p := prefix(t)
	f := testkit.NewFaulty(open(t, h))
	lag := time.Millisecond
	if own {
		lag = time.Hour
	}
	lax, err := counter.NewLax(f, counter.Options{Prefix: p, AllowedLag: lag})
	if err != nil {
		t.Fatal(err)
	}
	hang := f.HangScript(counterscript.Flush.Name())
	t.Cleanup(hang.Release)
	release := time.AfterFunc(5*time.Second, hang.Release) // never deadlock the test on today's code
	defer release.Stop()
	lax.Inc(ctx, "k", 1)
	if !own {
		select {
		case <-hang.Started():
		case <-time.After(5 * time.Second):
			t.Fatal("the background flush did not start")
		}
	}
	const budget = 100 * time.Millisecond
	cctx, cancel := context.WithTimeout(ctx, budget)
	start := time.Now()
	err = lax.Close(cctx)
	el := time.Since(start)
	cancel()
	t.Logf("Close with a %v context returned after %v", budget, el)
	if el > budget+500*time.Millisecond {
		t.Errorf("Close took %v with a %v context while a flush hung", el, budget)
	}
	var ue *counter.UnflushedError
	if !errors.As(err, &ue) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v; want an *UnflushedError matching context.DeadlineExceeded", err)
	}
	if got := fmt.Sprint(ue.Pending); got != "map[k:1]" {
		t.Errorf("Close reported unflushed %s, want map[k:1]", got)
	}
	hang.Release()
	cctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := lax.Close(cctx); err != nil {
		t.Fatalf("second Close after the backend answered: %v", err)
	}
	n, err := newStrict(t, open(t, h), p).Get(ctx, "k")
	want(t, "remote after the second Close (exactly once)", n, err, 1)
}

// Pending reads local state only: it answers at once while a flush hangs.
func testLaxPendingHang(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	f := testkit.NewFaulty(open(t, h))
	lax := newLaxOpts(t, f, counter.Options{Prefix: p, AllowedLag: time.Millisecond})
	hang := f.HangScript(counterscript.Flush.Name())
	t.Cleanup(hang.Release)
	lax.Inc(ctx, "k", 3)
	select {
	case <-hang.Started():
	case <-time.After(5 * time.Second):
		t.Fatal("the background flush did not start")
	}
	lax.Inc(ctx, "j", 1)
	got := make(chan map[string]int64, 1)
	go func() { got <- lax.Pending() }()
	select {
	case p := <-got:
		if fmt.Sprint(p) != "map[j:1 k:3]" {
			t.Errorf("Pending while a flush hangs = %v, want map[j:1 k:3]", p)
		}
	case <-time.After(time.Second):
		t.Errorf("Pending did not return within 1s while a flush hung")
		hang.Release()
		<-got
	}
}

// Get during an outage returns the local view (remote as last seen +
// pending) together with an error saying it could not be refreshed.
func testLaxGetOutage(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	f := testkit.NewFaulty(open(t, h))
	const lag = 20 * time.Millisecond
	lax := newLaxOpts(t, f, counter.Options{Prefix: p, AllowedLag: lag})
	lax.Inc(ctx, "k", 5)
	if err := lax.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	newStrict(t, open(t, h), p).Inc(ctx, "k", 100) // another process; this one cannot see it
	f.FailScript("", errors.New("outage"))
	lax.Inc(ctx, "k", 1)
	time.Sleep(2 * lag) // the remote part is now older than AllowedLag
	n, err := lax.Get(ctx, "k")
	if n != 6 || err == nil || !errors.Is(err, distkit.ErrNotApplied) {
		t.Fatalf("Get during an outage = %d, %v; want the local view 6 and an error matching ErrNotApplied", n, err)
	}
	f.FailScript("", nil)
	testkit.Eventually(t, 5*time.Second, "Get after the outage", func() bool {
		n, err := lax.Get(ctx, "k")
		return err == nil && n == 106
	})
}

// Views and flushes are exact over the whole int64 range.
func testLaxExtremes(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	lax := newLaxOpts(t, open(t, h), counter.Options{Prefix: p, AllowedLag: time.Hour})
	strict := newStrict(t, open(t, h), p)
	if _, err := lax.Set(ctx, "k", math.MinInt64); err != nil {
		t.Fatal(err)
	}
	n, err := lax.Inc(ctx, "k", math.MaxInt64)
	want(t, "MinInt64 + MaxInt64", n, err, -1)
	n, err = lax.Inc(ctx, "k", math.MaxInt64)
	want(t, "-1 + MaxInt64 (pending 2×MaxInt64)", n, err, math.MaxInt64-1)
	n, err = lax.Inc(ctx, "k", 1)
	want(t, "up to MaxInt64", n, err, math.MaxInt64)
	if _, err := lax.Inc(ctx, "k", 1); !errors.Is(err, distkit.ErrOverflow) {
		t.Fatalf("Inc past MaxInt64: %v", err)
	}
	if err := lax.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	n, err = strict.Get(ctx, "k")
	want(t, "remote", n, err, math.MaxInt64)
	n, err = lax.Dec(ctx, "k", math.MaxInt64)
	want(t, "back to 0", n, err, 0)
	n, err = lax.Inc(ctx, "k", math.MinInt64)
	want(t, "down to MinInt64", n, err, math.MinInt64)
	if err := lax.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	n, err = strict.Get(ctx, "k")
	want(t, "remote", n, err, math.MinInt64)
	// Many cycles of huge deltas with resets in between: the local state
	// of a key never runs out of range while its view stays in range.
	for i := range 8 {
		if _, err := lax.Inc(ctx, "c", math.MaxInt64); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if err := lax.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := lax.Set(ctx, "c", 0); err != nil {
			t.Fatal(err)
		}
	}
}

// Clear and Del drop the local state of the keys they remove: memory goes
// back to where it was.
func testLaxClearDrops(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	lax := newLaxOpts(t, open(t, h), counter.Options{Prefix: p, AllowedLag: time.Hour})
	const n = 50_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%d:requests-with-a-longer-name", i)
	}
	var base, peak, after int64
	// The heap also holds what other goroutines of the process allocate
	// and free (a driver's buffers, a previous test's leftovers): when the
	// keys' own growth does not show, measure again (at most 3 times).
	for round := 1; ; round++ {
		base = heapInUse()
		for _, k := range keys {
			lax.Inc(ctx, k, 1)
		}
		if err := lax.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		peak = heapInUse()
		if err := lax.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		after = heapInUse()
		t.Logf("heap: %d KiB before, %d KiB with %d keys, %d KiB after Clear", base>>10, peak>>10, n, after>>10)
		if peak-base >= n*64 || round == 3 {
			break
		}
	}
	if growth := peak - base; growth < n*64 || after-base > growth/4 {
		t.Errorf("after Clear the heap is %d KiB above where it started (%d KiB with the keys)", (after-base)>>10, growth>>10)
	}
	base = after // the driver may keep buffers grown by the big flush
	for _, k := range keys[:1000] {
		lax.Inc(ctx, k, 1)
	}
	if err := lax.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	peak = heapInUse()
	for _, k := range keys[:1000] {
		if _, err := lax.Del(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	after = heapInUse()
	t.Logf("heap: %d KiB with 1000 keys, %d KiB after Del of each", peak>>10, after>>10)
	if after-base > (peak-base)/4+(64<<10) {
		t.Errorf("after Del the heap is %d KiB above where it started (%d KiB with the keys)", (after-base)>>10, (peak-base)>>10)
	}
	runtime.KeepAlive(keys)
}

// heapInUse is the live heap after a full collection.
func heapInUse() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// Keys with nothing pending and no use for IdleAfter leave the local
// state (primitives/counter's tests show the memory going back to where
// it was); a key used again starts afresh and loses nothing.
func testLaxIdle(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	// No background flush: nothing is evictable while pending, so all the
	// keys are there until the Flush below; eviction runs on its own
	// schedule.
	const idle = 200 * time.Millisecond
	lax := newLaxOpts(t, open(t, h), counter.Options{Prefix: p, AllowedLag: time.Hour, IdleAfter: idle})
	const n = 20_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("session:%d:hits", i)
	}
	for _, k := range keys {
		lax.Inc(ctx, k, 1)
	}
	if got := lax.Tracked(); got != n {
		t.Fatalf("Tracked = %d with %d keys pending", got, n)
	}
	if err := lax.Flush(ctx); err != nil { // idle from now on
		t.Fatal(err)
	}
	lax.Inc(ctx, "busy", 1) // a key with something pending stays
	eventually(t, 10*time.Second, "idle keys evicted", func() bool { return lax.Tracked() == 1 })
	if p := lax.Pending(); len(p) > 1 {
		t.Fatalf("Pending after eviction: %d keys", len(p))
	}
	// A key used again after eviction starts afresh: its delta adds up.
	lax.Inc(ctx, keys[7], 1)
	n1, err := lax.Get(ctx, keys[7])
	want(t, "Get of a key used again after eviction", n1, err, 2)
	if err := lax.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	n1, err = newStrict(t, open(t, h), p).Get(ctx, keys[7])
	want(t, "remote", n1, err, 2)
	runtime.KeepAlive(keys)
}

// A flush batch applied with its reply lost, whose resends the server then
// refuses before running them (LOADING while it restarts from its AOF,
// connection refused): the batch stays in flight and is applied once, not
// sent again as a new batch (seen: kill -9 mid-flush counted 4928 twice).
func testLaxResendRefused(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	w := testkit.Wrap(open(t, h))
	lax := newLaxOpts(t, w, counter.Options{Prefix: p, AllowedLag: time.Hour})
	lax.Inc(ctx, "k", 5)
	w.LoseNextReply(counterscript.Flush.Name())
	if err := lax.Flush(ctx); !errors.Is(err, distkit.ErrIndeterminate) {
		t.Fatalf("flush with a lost reply: %v", err)
	}
	for _, cause := range []error{
		&backend.ScriptError{Script: counterscript.Flush.Name(), Msg: "LOADING Redis is loading the dataset in memory"},
		errors.New("dial tcp: connection refused"),
	} {
		w.RefuseNext(counterscript.Flush.Name(), driver.NotApplied(cause))
		if err := lax.Flush(ctx); !errors.Is(err, distkit.ErrNotApplied) {
			t.Fatalf("resend refused: %v", err)
		}
	}
	lax.Inc(ctx, "k", 1)
	if err := lax.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := newStrict(t, open(t, h), p).Get(ctx, "k")
	want(t, "remote after the resend went through", n, err, 6)
	if pd := lax.Pending(); len(pd) != 0 {
		t.Fatalf("Pending = %v", pd)
	}
}
