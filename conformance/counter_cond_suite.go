package conformance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/primitives/counter"
)

// counterKind builds one implementation of counter.Counter.
type counterKind struct {
	name string
	new  func(t *testing.T, b backend.Backend, prefix string) counter.Counter
}

var counterKinds = []counterKind{
	{"Strict", func(t *testing.T, b backend.Backend, p string) counter.Counter { return newStrict(t, b, p) }},
	{"Lax", func(t *testing.T, b backend.Backend, p string) counter.Counter { return newLax(t, b, p) }},
}

func newLax(t *testing.T, b backend.Backend, p string) *counter.Lax {
	t.Helper()
	c, err := counter.NewLax(b, counter.Options{Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

// runCounterInterface checks the behaviour Strict and Lax share.
func runCounterInterface(t *testing.T, newHarness NewHarness) {
	for _, k := range counterKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Run("Comparators", func(t *testing.T) { testComparators(t, newHarness(t), k) })
			t.Run("AbsentIsZero", func(t *testing.T) { testCondAbsent(t, newHarness(t), k) })
			t.Run("Batches", func(t *testing.T) { testBatches(t, newHarness(t), k) })
			t.Run("BatchAtomicOverflow", func(t *testing.T) { testBatchOverflow(t, newHarness(t), k) })
			t.Run("BatchInvalid", func(t *testing.T) { testBatchInvalid(t, newHarness(t), k) })
			t.Run("EmptyBatchNoIO", func(t *testing.T) { testEmptyBatch(t, newHarness(t), k) })
			t.Run("GetAll", func(t *testing.T) { testGetAll(t, newHarness(t), k) })
			t.Run("SetDelClear", func(t *testing.T) { testSetDelClear(t, newHarness(t), k) })
		})
	}
}

func want2(t *testing.T, what string, cur, prev int64, err error, wc, wp int64) {
	t.Helper()
	if err != nil || cur != wc || prev != wp {
		t.Fatalf("%s: got (%d, %d), %v; want (%d, %d)", what, cur, prev, err, wc, wp)
	}
}

func testComparators(t *testing.T, h Harness, k counterKind) {
	ctx := context.Background()
	c := k.new(t, open(t, h), prefix(t))
	match := []distkit.Comparator{distkit.Eq(5), distkit.Ne(4), distkit.Lt(6), distkit.Gt(4), distkit.Le(5), distkit.Le(6), distkit.Ge(5), distkit.Ge(4), distkit.Always()}
	miss := []distkit.Comparator{distkit.Eq(4), distkit.Ne(5), distkit.Lt(5), distkit.Gt(5), distkit.Le(4), distkit.Ge(6)}
	for _, cmp := range match {
		c.Set(ctx, "k", 5)
		cur, prev, err := c.IncIf(ctx, "k", cmp, 3)
		want2(t, "IncIf "+cmp.String()+" on 5", cur, prev, err, 8, 5)
		c.Set(ctx, "k", 5)
		cur, prev, err = c.SetIf(ctx, "k", cmp, -9)
		want2(t, "SetIf "+cmp.String()+" on 5", cur, prev, err, -9, 5)
		n, err := c.Get(ctx, "k")
		want(t, "Get after matching SetIf", n, err, -9)
	}
	for _, cmp := range miss {
		c.Set(ctx, "k", 5)
		cur, prev, err := c.IncIf(ctx, "k", cmp, 3)
		want2(t, "IncIf "+cmp.String()+" on 5", cur, prev, err, 5, 5)
		cur, prev, err = c.SetIf(ctx, "k", cmp, -9)
		want2(t, "SetIf "+cmp.String()+" on 5", cur, prev, err, 5, 5)
		n, err := c.Get(ctx, "k")
		want(t, "Get after missed comparisons", n, err, 5)
	}
	// Exact comparison beyond 2^53, where doubles collapse neighbours.
	c.Set(ctx, "big", 1<<53+1)
	cur, prev, err := c.IncIf(ctx, "big", distkit.Eq(1<<53), 1)
	want2(t, "IncIf Eq(2^53) on 2^53+1", cur, prev, err, 1<<53+1, 1<<53+1)
	cur, prev, err = c.IncIf(ctx, "big", distkit.Gt(1<<53), 1)
	want2(t, "IncIf Gt(2^53) on 2^53+1", cur, prev, err, 1<<53+2, 1<<53+1)
	c.Set(ctx, "neg", -10)
	cur, prev, err = c.SetIf(ctx, "neg", distkit.Lt(-9), 1)
	want2(t, "SetIf Lt(-9) on -10", cur, prev, err, 1, -10)
	cur, prev, err = c.IncIf(ctx, "neg", distkit.Comparator{Op: 99}, 1)
	if !errors.Is(err, distkit.ErrInvalidOption) {
		t.Fatalf("unknown comparator: got %v, want ErrInvalidOption", err)
	}
	_, _, err = c.IncIf(ctx, "k", distkit.Always(), math.MaxInt64)
	if !errors.Is(err, distkit.ErrOverflow) {
		t.Fatalf("IncIf overflow: got %v, want ErrOverflow", err)
	}
	n, err := c.Get(ctx, "k")
	want(t, "value after IncIf overflow", n, err, 5)
}

func testCondAbsent(t *testing.T, h Harness, k counterKind) {
	ctx := context.Background()
	c := k.new(t, open(t, h), prefix(t))
	cur, prev, err := c.IncIf(ctx, "a", distkit.Gt(0), 3)
	want2(t, "IncIf Gt(0) on absent", cur, prev, err, 0, 0)
	cur, prev, err = c.IncIf(ctx, "a", distkit.Eq(0), 3)
	want2(t, "IncIf Eq(0) on absent", cur, prev, err, 3, 0)
	cur, prev, err = c.SetIf(ctx, "b", distkit.Le(0), 7)
	want2(t, "SetIf Le(0) on absent", cur, prev, err, 7, 0)
}

func testBatches(t *testing.T, h Harness, k counterKind) {
	ctx := context.Background()
	c := k.new(t, open(t, h), prefix(t))
	res, err := c.IncAllIf(ctx, []counter.Update{
		{Key: "a", Cmp: distkit.Always(), Delta: 1},
		{Key: "a", Cmp: distkit.Eq(1), Delta: 10},  // sees the first item
		{Key: "b", Cmp: distkit.Gt(0), Delta: 5},   // miss
		{Key: "a", Cmp: distkit.Eq(1), Delta: 100}, // miss: a is 11 now
		{Key: "b", Delta: -2},                      // zero Cmp is Always
	})
	wantResults(t, "IncAllIf", res, err, []counter.Result{mkres("a", 1, 0), mkres("a", 11, 1), mkres("b", 0, 0), mkres("a", 11, 11), mkres("b", -2, 0)})
	res, err = c.SetAllIf(ctx, []counter.Update{
		{Key: "a", Cmp: distkit.Ge(11), Delta: 0},
		{Key: "a", Cmp: distkit.Eq(0), Delta: 42},
		{Key: "b", Cmp: distkit.Ne(-2), Delta: 9}, // miss
		{Key: "c", Cmp: distkit.Lt(1), Delta: -1},
	})
	wantResults(t, "SetAllIf", res, err, []counter.Result{mkres("a", 0, 11), mkres("a", 42, 0), mkres("b", -2, -2), mkres("c", -1, 0)})
	vals, err := c.GetAll(ctx, "a", "b", "c")
	if err != nil || fmt.Sprint(vals) != "[42 -2 -1]" {
		t.Fatalf("GetAll after batches: %v, %v", vals, err)
	}
}

func mkres(key string, cur, prev int64) counter.Result {
	return counter.Result{Key: key, Cur: cur, Prev: prev}
}

func wantResults(t *testing.T, what string, got []counter.Result, err error, want []counter.Result) {
	t.Helper()
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: got %v, %v; want %v", what, got, err, want)
	}
}

func testBatchOverflow(t *testing.T, h Harness, k counterKind) {
	ctx := context.Background()
	c := k.new(t, open(t, h), prefix(t))
	c.Set(ctx, "big", math.MaxInt64)
	c.Set(ctx, "a", 1)
	_, err := c.IncAllIf(ctx, []counter.Update{
		{Key: "a", Delta: 1},
		{Key: "new", Delta: 1},
		{Key: "big", Delta: 1},
	})
	if !errors.Is(err, distkit.ErrOverflow) {
		t.Fatalf("batch overflow: got %v, want ErrOverflow", err)
	}
	vals, err := c.GetAll(ctx, "a", "new", "big")
	if err != nil || fmt.Sprint(vals) != fmt.Sprint([]int64{1, 0, math.MaxInt64}) {
		t.Fatalf("after a failed batch: %v, %v; want nothing changed", vals, err)
	}
}

func testBatchInvalid(t *testing.T, h Harness, k counterKind) {
	ctx := context.Background()
	b := open(t, h)
	p := prefix(t)
	c := k.new(t, b, p)
	for _, bad := range [][]counter.Update{
		{{Key: "ok", Delta: 1}, {Key: strings.Repeat("k", distkit.MaxKeyLen+1), Delta: 1}},
		{{Key: "ok", Delta: 1}, {Key: "", Delta: 1}},
	} {
		if _, err := c.IncAllIf(ctx, bad); !errors.Is(err, distkit.ErrInvalidKey) {
			t.Fatalf("IncAllIf %v: got %v, want ErrInvalidKey", bad, err)
		}
		if _, err := c.SetAllIf(ctx, bad); !errors.Is(err, distkit.ErrInvalidKey) {
			t.Fatalf("SetAllIf %v: got %v, want ErrInvalidKey", bad, err)
		}
	}
	if _, err := c.IncAllIf(ctx, []counter.Update{{Key: "ok", Cmp: distkit.Comparator{Op: 77}}}); !errors.Is(err, distkit.ErrInvalidOption) {
		t.Fatalf("bad comparator: %v", err)
	}
	if _, err := c.GetAll(ctx, "ok", ""); !errors.Is(err, distkit.ErrInvalidKey) {
		t.Fatalf("GetAll bad key: %v", err)
	}
	if got := counterFields(t, b, p); got != 0 {
		t.Fatalf("rejected batches wrote %d fields", got)
	}
}

func testEmptyBatch(t *testing.T, h Harness, k counterKind) {
	ctx := context.Background()
	b := h.NewBackend(t)
	c := k.new(t, b, prefix(t))
	b.Close() // any I/O would now fail
	if res, err := c.IncAllIf(ctx, nil); err != nil || res == nil || len(res) != 0 {
		t.Fatalf("empty IncAllIf: %v, %v", res, err)
	}
	if res, err := c.SetAllIf(ctx, []counter.Update{}); err != nil || res == nil || len(res) != 0 {
		t.Fatalf("empty SetAllIf: %v, %v", res, err)
	}
	if vals, err := c.GetAll(ctx); err != nil || vals == nil || len(vals) != 0 {
		t.Fatalf("empty GetAll: %v, %v", vals, err)
	}
}

func testGetAll(t *testing.T, h Harness, k counterKind) {
	ctx := context.Background()
	c := k.new(t, open(t, h), prefix(t))
	c.Set(ctx, "x", math.MinInt64)
	c.Inc(ctx, "y", 2)
	vals, err := c.GetAll(ctx, "y", "absent", "x", "y")
	if err != nil || fmt.Sprint(vals) != fmt.Sprint([]int64{2, 0, math.MinInt64, 2}) {
		t.Fatalf("GetAll: %v, %v", vals, err)
	}
}

func testSetDelClear(t *testing.T, h Harness, k counterKind) {
	ctx := context.Background()
	b := open(t, h)
	p := prefix(t)
	c := k.new(t, b, p)
	strict := newStrict(t, b, p)
	c.Inc(ctx, "a", 4)
	n, err := c.Del(ctx, "a")
	want(t, "Del returns the old value including pending deltas", n, err, 4)
	n, err = strict.Get(ctx, "a")
	want(t, "remote after Del", n, err, 0)
	c.Inc(ctx, "a", 2)
	n, err = c.Set(ctx, "a", 10)
	want(t, "Set", n, err, 10)
	c.Inc(ctx, "a", 1)
	n, err = c.Get(ctx, "a")
	want(t, "Get after Set and Inc", n, err, 11)
	c.Inc(ctx, "b", 1)
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	vals, err := strict.GetAll(ctx, "a", "b")
	if err != nil || fmt.Sprint(vals) != "[0 0]" {
		t.Fatalf("remote after Clear: %v, %v", vals, err)
	}
	n, err = c.Get(ctx, "a")
	want(t, "Get after Clear", n, err, 0)
}
