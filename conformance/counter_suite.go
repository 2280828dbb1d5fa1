package conformance

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/primitives/counter"
)

// RunPrimitives checks every primitive's behaviour on the harness's backend.
func RunPrimitives(t *testing.T, newHarness NewHarness) {
	t.Run("StrictCounter", func(t *testing.T) { runStrictCounter(t, newHarness) })
	t.Run("Counter", func(t *testing.T) { runCounterInterface(t, newHarness) })
	t.Run("LaxCounter", func(t *testing.T) { runLaxCounter(t, newHarness) })
	t.Run("InstanceCounter", func(t *testing.T) { runInstanceCounter(t, newHarness) })
	t.Run("Lock", func(t *testing.T) { runLocks(t, newHarness) })
	t.Run("RateLimit", func(t *testing.T) { runRateLimit(t, newHarness) })
	t.Run("Semaphore", func(t *testing.T) { runSemaphore(t, newHarness) })
	t.Run("Election", func(t *testing.T) { runElection(t, newHarness) })
	t.Run("AnyKey", func(t *testing.T) { testAnyKey(t, newHarness(t)) })
}

func runStrictCounter(t *testing.T, newHarness NewHarness) {
	t.Run("Basics", func(t *testing.T) { testStrictBasics(t, newHarness(t)) })
	t.Run("ExactInt64", func(t *testing.T) { testStrictExact(t, newHarness(t)) })
	t.Run("Overflow", func(t *testing.T) { testStrictOverflow(t, newHarness(t)) })
	t.Run("InvalidInput", func(t *testing.T) { testStrictInvalid(t, newHarness(t)) })
	t.Run("PrefixIsolation", func(t *testing.T) { testStrictPrefixes(t, newHarness(t)) })
	t.Run("Concurrent", func(t *testing.T) { testStrictConcurrent(t, newHarness(t)) })
	t.Run("Closed", func(t *testing.T) { testStrictClosed(t, newHarness(t)) })
	t.Run("GroupCommit", func(t *testing.T) { testStrictGroupCommit(t, newHarness(t)) })
}

func newStrict(t *testing.T, b backend.Backend, p string) *counter.Strict {
	t.Helper()
	c, err := counter.NewStrict(b, counter.Options{Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func want(t *testing.T, what string, got int64, err error, w int64) {
	t.Helper()
	if err != nil || got != w {
		t.Fatalf("%s: got %d, %v; want %d", what, got, err, w)
	}
}

// hashLen reads the number of fields of a prefix's counter hash, bypassing
// the primitive, to prove what was (not) written.
var hashLenScript = driver.NewScript("conf-hlen", `return redis.call('HLEN', KEYS[1])`,
	func(st driver.Store, keys, _ []string) (backend.Value, error) {
		n, err := st.HLen(keys[0])
		return backend.Int(int64(n)), err
	})

func counterFields(t *testing.T, b backend.Backend, p string) int64 {
	t.Helper()
	return evalInt(t, b, hashLenScript, []string{keyspace.CounterHash(p)})
}

func testStrictBasics(t *testing.T, h Harness) {
	ctx := context.Background()
	b := open(t, h)
	p := prefix(t)
	c := newStrict(t, b, p)
	n, err := c.Get(ctx, "absent")
	want(t, "Get absent", n, err, 0)
	n, err = c.Inc(ctx, "a", 5)
	want(t, "Inc 5", n, err, 5)
	n, err = c.Inc(ctx, "a", -2)
	want(t, "Inc -2", n, err, 3)
	n, err = c.Dec(ctx, "a", 10)
	want(t, "Dec 10", n, err, -7)
	n, err = c.Inc(ctx, "a", 0)
	want(t, "Inc 0", n, err, -7)
	n, err = c.Get(ctx, "a")
	want(t, "Get", n, err, -7)
	n, err = c.Set(ctx, "b", 100)
	want(t, "Set", n, err, 100)
	n, err = c.Get(ctx, "b")
	want(t, "Get after Set", n, err, 100)
	n, err = c.Del(ctx, "b")
	want(t, "Del returns old value", n, err, 100)
	n, err = c.Del(ctx, "b")
	want(t, "Del absent", n, err, 0)
	n, err = c.Get(ctx, "b")
	want(t, "Get after Del", n, err, 0)
	if got := counterFields(t, b, p); got != 1 {
		t.Fatalf("fields after Del: %d, want 1 (only a)", got)
	}
	// Another client of the same server sees the same values at once.
	c2 := newStrict(t, open(t, h), p)
	n, err = c2.Get(ctx, "a")
	want(t, "Get from a second client", n, err, -7)
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	n, err = c2.Get(ctx, "a")
	want(t, "Get after Clear", n, err, 0)
	if got := counterFields(t, b, p); got != 0 {
		t.Fatalf("fields after Clear: %d, want 0", got)
	}
}

func testStrictExact(t *testing.T, h Harness) {
	ctx := context.Background()
	c := newStrict(t, open(t, h), prefix(t))
	// Beyond 2^53 a double cannot tell these apart; distkit must.
	n, err := c.Set(ctx, "big", math.MaxInt64-10)
	want(t, "Set near max", n, err, math.MaxInt64-10)
	n, err = c.Inc(ctx, "big", 9)
	want(t, "Inc to max-1", n, err, math.MaxInt64-1)
	n, err = c.Inc(ctx, "big", 1)
	want(t, "Inc to max", n, err, math.MaxInt64)
	n, err = c.Set(ctx, "small", math.MinInt64+1)
	want(t, "Set near min", n, err, math.MinInt64+1)
	n, err = c.Dec(ctx, "small", 1)
	want(t, "Dec to min", n, err, math.MinInt64)
	n, err = c.Inc(ctx, "fresh", math.MinInt64)
	want(t, "Inc absent by min", n, err, math.MinInt64)
}

func testStrictOverflow(t *testing.T, h Harness) {
	ctx := context.Background()
	c := newStrict(t, open(t, h), prefix(t))
	cases := []struct {
		name  string
		start int64
		op    func() (int64, error)
	}{
		{"Inc past max", math.MaxInt64, func() (int64, error) { return c.Inc(ctx, "k", 1) }},
		{"Inc max by max", math.MaxInt64, func() (int64, error) { return c.Inc(ctx, "k", math.MaxInt64) }},
		{"Inc past min", math.MinInt64, func() (int64, error) { return c.Inc(ctx, "k", -1) }},
		{"Dec past min", math.MinInt64 + 5, func() (int64, error) { return c.Dec(ctx, "k", 6) }},
		{"Dec by MinInt64", 0, func() (int64, error) { return c.Dec(ctx, "k", math.MinInt64) }},
		{"Inc -1 by min", -1, func() (int64, error) { return c.Inc(ctx, "k", math.MinInt64) }},
	}
	for _, tc := range cases {
		if _, err := c.Set(ctx, "k", tc.start); err != nil {
			t.Fatal(err)
		}
		if _, err := tc.op(); !errors.Is(err, distkit.ErrOverflow) {
			t.Fatalf("%s: got %v, want ErrOverflow", tc.name, err)
		}
		n, err := c.Get(ctx, "k")
		want(t, tc.name+": value unchanged", n, err, tc.start)
	}
}

func testStrictInvalid(t *testing.T, h Harness) {
	ctx := context.Background()
	b := open(t, h)
	p := prefix(t)
	c := newStrict(t, b, p)
	bad := map[string]string{
		"empty":    "",
		"too long": strings.Repeat("k", distkit.MaxKeyLen+1),
	}
	for name, key := range bad {
		ops := map[string]func() error{
			"Inc": func() error { _, err := c.Inc(ctx, key, 1); return err },
			"Dec": func() error { _, err := c.Dec(ctx, key, 1); return err },
			"Set": func() error { _, err := c.Set(ctx, key, 1); return err },
			"Get": func() error { _, err := c.Get(ctx, key); return err },
			"Del": func() error { _, err := c.Del(ctx, key); return err },
		}
		for op, f := range ops {
			err := f()
			if !errors.Is(err, distkit.ErrInvalidKey) {
				t.Fatalf("%s with %s key: got %v, want ErrInvalidKey", op, name, err)
			}
		}
	}
	if got := counterFields(t, b, p); got != 0 {
		t.Fatalf("%d fields written by rejected calls", got)
	}
	for name, pre := range bad {
		if name == "empty" {
			continue // empty means the default prefix
		}
		if _, err := counter.NewStrict(b, counter.Options{Prefix: pre}); !errors.Is(err, distkit.ErrInvalidKey) {
			t.Fatalf("prefix %s: got %v, want ErrInvalidKey", name, err)
		}
	}
	if _, err := counter.NewStrict(nil, counter.Options{}); !errors.Is(err, distkit.ErrInvalidOption) {
		t.Fatalf("nil backend: got %v, want ErrInvalidOption", err)
	}
}

func testStrictPrefixes(t *testing.T, h Harness) {
	ctx := context.Background()
	b := open(t, h)
	p := prefix(t)
	// Several prefixes land in different hash slots (on Cluster, nodes).
	cs := make([]*counter.Strict, 6)
	for i := range cs {
		cs[i] = newStrict(t, b, p+"-"+string(rune('a'+i)))
		for j := 0; j <= i; j++ {
			if _, err := cs[i].Inc(ctx, "k", 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cs[0].Clear(ctx); err != nil {
		t.Fatal(err)
	}
	for i, c := range cs {
		w := int64(i + 1)
		if i == 0 {
			w = 0
		}
		n, err := c.Get(ctx, "k")
		want(t, "prefix "+c.Prefix(), n, err, w)
	}
}

func testStrictConcurrent(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	const workers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := range workers {
		c := newStrict(t, open(t, h), p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				var err error
				if i%2 == 0 {
					_, err = c.Inc(ctx, "hot", 3)
				} else {
					_, err = c.Dec(ctx, "hot", 1)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n, err := newStrict(t, open(t, h), p).Get(ctx, "hot")
	want(t, "total", n, err, workers/2*each*3-workers/2*each)
}

func testStrictClosed(t *testing.T, h Harness) {
	ctx := context.Background()
	b := open(t, h)
	c := newStrict(t, b, prefix(t))
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Inc(ctx, "k", 1); !errors.Is(err, distkit.ErrClosed) {
		t.Fatalf("Inc after Close: %v, want ErrClosed", err)
	}
	c2 := newStrict(t, b, prefix(t))
	b.Close()
	_, err := c2.Inc(ctx, "k", 1)
	if !errors.Is(err, distkit.ErrClosed) || !errors.Is(err, distkit.ErrNotApplied) {
		t.Fatalf("Inc on a closed backend: %v, want ErrClosed and ErrNotApplied", err)
	}
}
