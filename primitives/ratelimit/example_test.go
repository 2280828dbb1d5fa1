package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

func ExampleRedis() {
	ctx := context.Background()
	b := memory.New(memory.Options{}) // or a Redis driver
	l, _ := ratelimit.NewRedis(b, ratelimit.Options{Window: time.Second})
	defer l.Close(ctx)

	limit := l.Absolute()
	for i := range 4 {
		d, _ := limit.Inc(ctx, "user-42", 3, 1) // 3 per second
		fmt.Printf("request %d: allowed=%v remaining=%d\n", i+1, d.Allowed, d.Remaining)
	}
	// Output:
	// request 1: allowed=true remaining=2
	// request 2: allowed=true remaining=1
	// request 3: allowed=true remaining=0
	// request 4: allowed=false remaining=0
}

func ExampleLocal_suppressed() {
	ctx := context.Background()
	l, _ := ratelimit.NewLocal(ratelimit.Options{Window: time.Second, HardLimitFactor: 2})
	defer l.Close(ctx)
	s := l.Suppressed()

	d, _ := s.Inc(ctx, "api", 100, 100) // at the rate: nothing suppressed
	fmt.Printf("allowed=%v suppression=%.2f\n", d.Allowed, d.Suppression)
	d, _ = s.Inc(ctx, "api", 100, 150) // offered 250 > hard limit 200
	fmt.Printf("allowed=%v suppression=%.2f\n", d.Allowed, d.Suppression)
	// Output:
	// allowed=true suppression=0.00
	// allowed=false suppression=1.00
}

func ExampleOptions_failurePolicy() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	closed, _ := ratelimit.NewRedis(b, ratelimit.Options{}) // FailClosed by default
	open, _ := ratelimit.NewRedis(b, ratelimit.Options{OnError: ratelimit.FailOpen})
	defer closed.Close(ctx)
	defer open.Close(ctx)

	b.FailNext(2, nil) // the backend is unreachable for the next two calls
	for _, l := range []*ratelimit.Redis{closed, open} {
		d, err := l.Absolute().Inc(ctx, "k", 10, 1)
		if err != nil { // invalid input, a closed limiter or ctx ended: not the outage
			panic(err)
		}
		fmt.Println(d.Allowed, errors.Is(d.Degraded, distkit.ErrNotApplied))
	}
	// Output:
	// false true
	// true true
}

func ExampleHybrid() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	h, _ := ratelimit.NewHybrid(b, ratelimit.Options{Window: time.Second})
	defer h.Close(ctx)

	admitted := 0
	for range 15 {
		if ok, _ := h.Absolute().Allow(ctx, "k", 10); ok { // decided in process
			admitted++
		}
	}
	fmt.Println("admitted:", admitted)
	// Output:
	// admitted: 10
}
