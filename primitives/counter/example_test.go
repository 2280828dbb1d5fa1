package counter_test

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/counter"
)

func ExampleStrict() {
	ctx := context.Background()
	b := memory.New(memory.Options{}) // or rueidis.New(client) / goredis.New(client)
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

	_, err := c.Inc(ctx, "user:42", 1)
	fmt.Println(errors.Is(err, distkit.ErrInvalidKey), err)

	c.Set(ctx, "big", math.MaxInt64)
	_, err = c.Inc(ctx, "big", 1)
	v, _ := c.Get(ctx, "big")
	fmt.Println(errors.Is(err, distkit.ErrOverflow), v == math.MaxInt64)
	// Output:
	// true counter: distkit: invalid key: key "user:42" contains ':' (the key separator) at byte 4
	// true true
}
