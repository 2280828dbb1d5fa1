package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
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
