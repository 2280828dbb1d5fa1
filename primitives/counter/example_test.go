package counter_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/counter"
)

func ExampleStrict() {
	ctx := context.Background()
	b := memory.New(memory.Options{}) // or rueidisbackend.New(client) / goredisbackend.New(client)
	defer b.Close()

	c, err := counter.NewStrict(b, counter.Options{Prefix: "shop"})
	if err != nil {
		panic(err)
	}
	defer c.Close(ctx)

	n, _ := c.Inc(ctx, "orders", 3)
	fmt.Println("after Inc 3:", n)
	n, _ = c.Dec(ctx, "orders", 1)
	fmt.Println("after Dec 1:", n)
	old, _ := c.Del(ctx, "orders")
	n, _ = c.Get(ctx, "orders")
	fmt.Println("Del returned", old, "then Get:", n)
	// Output:
	// after Inc 3: 3
	// after Dec 1: 2
	// Del returned 2 then Get: 0
}

func ExampleStrict_errors() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	c, _ := counter.NewStrict(b, counter.Options{})

	_, err := c.Inc(ctx, "", 1)
	fmt.Println(errors.Is(err, distkit.ErrInvalidKey), err)

	c.Set(ctx, "big", math.MaxInt64)
	_, err = c.Inc(ctx, "big", 1)
	v, _ := c.Get(ctx, "big")
	fmt.Println(errors.Is(err, distkit.ErrOverflow), v == math.MaxInt64)
	// Output:
	// true counter: distkit: invalid key: key is empty
	// true true
}

func ExampleLax() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()

	// Inc is in-process; a background flusher sends all pending deltas
	// every AllowedLag in one round trip.
	c, err := counter.NewLax(b, counter.Options{Prefix: "api", AllowedLag: 20 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	for range 1000 {
		c.Inc(ctx, "requests", 1) // no I/O, no allocation
	}
	n, _ := c.Get(ctx, "requests") // local view: remote + pending
	fmt.Println("local view:", n)

	// Close flushes everything; nil means every delta reached the backend.
	if err := c.Close(ctx); err != nil {
		fmt.Println("unflushed:", err)
	}
	strict, _ := counter.NewStrict(b, counter.Options{Prefix: "api"})
	n, _ = strict.Get(ctx, "requests")
	fmt.Println("in the backend after Close:", n)
	// Output:
	// local view: 1000
	// in the backend after Close: 1000
}

func ExampleStrict_IncIf() {
	ctx := context.Background()
	c, _ := counter.NewStrict(memory.New(memory.Options{}), counter.Options{})

	// Take a seat only while fewer than 2 are taken.
	for range 3 {
		cur, prev, _ := c.IncIf(ctx, "seats", distkit.Lt(2), 1)
		fmt.Println("taken:", cur, "granted:", cur != prev)
	}
	// Output:
	// taken: 1 granted: true
	// taken: 2 granted: true
	// taken: 2 granted: false
}

func ExampleStrict_IncAllIf() {
	ctx := context.Background()
	c, _ := counter.NewStrict(memory.New(memory.Options{}), counter.Options{})
	c.Set(ctx, "stock", 3)

	// Move one unit from stock to cart only if stock is positive, atomically;
	// the second item sees the first.
	res, _ := c.IncAllIf(ctx, []counter.Update{
		{Key: "stock", Cmp: distkit.Gt(0), Delta: -1},
		{Key: "cart", Cmp: distkit.Always(), Delta: 1},
	})
	for _, r := range res {
		fmt.Printf("%s: %d -> %d\n", r.Key, r.Prev, r.Cur)
	}
	// Output:
	// stock: 3 -> 2
	// cart: 0 -> 1
}

func ExampleLax_Close_unreachable() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	c, _ := counter.NewLax(b, counter.Options{AllowedLag: time.Hour})
	c.Inc(ctx, "k", 5)
	b.FailNext(1<<30, nil) // the backend is unreachable from now on

	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err := c.Close(cctx)
	var ue *counter.UnflushedError
	fmt.Println(errors.As(err, &ue), ue.Pending, errors.Is(err, distkit.ErrNotApplied))
	// Output:
	// true map[k:5] true
}

func ExampleLax_Failed() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	c, _ := counter.NewLax(b, counter.Options{AllowedLag: time.Hour})
	defer c.Close(ctx)
	other, _ := counter.NewStrict(b, counter.Options{}) // another process
	other.Set(ctx, "full", math.MaxInt64)

	c.Inc(ctx, "full", 1) // this process has not seen the value yet
	c.Inc(ctx, "fine", 1)
	err := c.Flush(ctx)
	var ue *counter.UnflushedError
	fmt.Println(errors.As(err, &ue), ue.Pending, errors.Is(ue.Failed["full"], distkit.ErrOverflow))
	fmt.Println(c.Pending(), errors.Is(c.Failed()["full"], distkit.ErrOverflow)) // "fine" was flushed

	c.Set(ctx, "full", 0) // overwriting the key drops the refused delta
	fmt.Println(c.Pending(), c.Failed())
	// Output:
	// true map[full:1] true
	// map[full:1] true
	// map[] map[]
}

func ExampleLax_Get_outage() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	c, _ := counter.NewLax(b, counter.Options{AllowedLag: 10 * time.Millisecond})
	defer c.Close(ctx)
	c.Inc(ctx, "k", 5)
	c.Flush(ctx)

	b.FailNext(1<<30, nil) // the backend is unreachable from now on
	c.Inc(ctx, "k", 1)
	time.Sleep(20 * time.Millisecond) // the remote part is now older than AllowedLag
	n, err := c.Get(ctx, "k")
	fmt.Println(n, errors.Is(err, distkit.ErrStale), errors.Is(err, distkit.ErrNotApplied))
	b.FailNext(0, nil)
	// Output:
	// 6 true true
}
