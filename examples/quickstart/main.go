// Command quickstart shows distkit on the in-memory backend: no Redis
// needed. Swap memory.New for rueidisbackend.New(client) or
// goredisbackend.New(client) (imported as rueidisbackend
// "github.com/distkit-go/distkit/backend/rueidis" and goredisbackend
// "github.com/distkit-go/distkit/backend/goredis") and nothing else
// changes.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/counter"
)

func main() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()

	c, err := counter.NewStrict(b, counter.Options{Prefix: "quickstart"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)

	step := func(what string, n int64, err error) {
		if err != nil {
			log.Fatalf("%s: %v", what, err)
		}
		fmt.Printf("%-34s -> %d\n", what, n)
	}
	fmt.Println("Strict counter on the memory backend (hash {quickstart}:counter)")
	n, err := c.Inc(ctx, "page-views", 1)
	step(`Inc("page-views", 1)`, n, err)
	n, err = c.Inc(ctx, "page-views", 41)
	step(`Inc("page-views", 41)`, n, err)
	n, err = c.Dec(ctx, "page-views", 2)
	step(`Dec("page-views", 2)`, n, err)
	n, err = c.Set(ctx, "stock", 10)
	step(`Set("stock", 10)`, n, err)
	n, err = c.Del(ctx, "stock")
	step(`Del("stock") returns the old value`, n, err)
	n, err = c.Get(ctx, "stock")
	step(`Get("stock")`, n, err)

	n, err = c.Inc(ctx, "user:42", 1)
	step(`Inc("user:42", 1)`, n, err)
	n, err = c.Inc(ctx, "2001:db8::1", 1)
	step(`Inc("2001:db8::1", 1)`, n, err)

	_, err = c.Inc(ctx, "", 1)
	fmt.Printf("Inc(\"\") is rejected before any I/O: ErrInvalidKey=%v\n  %v\n",
		errors.Is(err, distkit.ErrInvalidKey), err)
}
