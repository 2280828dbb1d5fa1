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
	l, _ := ratelimit.NewRedis(b, ratelimit.Options{})
	defer l.Close(ctx)

	perUser := ratelimit.PerSecond(3)
	for i := range 4 {
		d, _ := l.Absolute().Inc(ctx, "user-42", perUser, 1)
		fmt.Printf("request %d: allowed=%v remaining=%d\n", i+1, d.Allowed, d.Remaining)
	}
	// Output:
	// request 1: allowed=true remaining=2
	// request 2: allowed=true remaining=1
	// request 3: allowed=true remaining=0
	// request 4: allowed=false remaining=0
}

// Limits read like the requirement; the window is the limit's period.
func ExampleLimit() {
	for _, l := range []ratelimit.Limit{
		ratelimit.PerSecond(10),                 // a burst of 10, at most 10 in any second
		ratelimit.PerMinute(100),                // a burst of 100, at most 100 in any minute
		ratelimit.PerHour(1000),                 // at most 1000 in any hour
		ratelimit.Every(250 * time.Millisecond), // one per 250 ms, no burst
		ratelimit.Per(5, 2*time.Second),         // 5 in any 2 seconds
		{N: 5000, Period: 24 * time.Hour},       // a literal works too
		ratelimit.Per(1, 1500*time.Microsecond), // not whole milliseconds
	} {
		fmt.Printf("%-8v valid=%v\n", l, l.Validate() == nil)
	}
	// Output:
	// 10/s     valid=true
	// 100/m    valid=true
	// 1000/h   valid=true
	// 1/250ms  valid=true
	// 5/2s     valid=true
	// 5000/d   valid=true
	// 1/1.5ms  valid=false
}

func ExampleParseLimit() {
	for _, s := range []string{"100/m", "10 / second", "1/250ms", "every 2s", "3/1m30s", "0/s", "10/fortnight"} {
		l, err := ratelimit.ParseLimit(s)
		fmt.Println(l, err != nil && errors.Is(err, distkit.ErrInvalidOption))
	}
	// Output:
	// 100/m false
	// 10/s false
	// 1/250ms false
	// 1/2s false
	// 3/1m30s false
	// 0/s true
	// 0/0s true
}

func ExampleLocal_suppressed() {
	ctx := context.Background()
	l, _ := ratelimit.NewLocal(ratelimit.Options{HardLimitFactor: 2})
	defer l.Close(ctx)
	s := l.Suppressed()

	d, _ := s.Inc(ctx, "api", ratelimit.PerSecond(100), 100) // at the limit: nothing suppressed
	fmt.Printf("allowed=%v suppression=%.2f\n", d.Allowed, d.Suppression)
	d, _ = s.Inc(ctx, "api", ratelimit.PerSecond(100), 150) // offered 250 > hard limit 200
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
		d, err := l.Absolute().Inc(ctx, "k", ratelimit.PerSecond(10), 1)
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
	h, _ := ratelimit.NewHybrid(b, ratelimit.Options{})
	defer h.Close(ctx)

	admitted := 0
	for range 15 {
		if ok, _ := h.Absolute().Allow(ctx, "k", ratelimit.PerSecond(10)); ok { // decided in process
			admitted++
		}
	}
	fmt.Println("admitted:", admitted)
	// Output:
	// admitted: 10
}

// Wait blocks until the request fits, or refuses at once when the
// context's deadline comes first.
func ExampleAbsolute_Wait() {
	ctx := context.Background()
	l, _ := ratelimit.NewLocal(ratelimit.Options{})
	defer l.Close(ctx)
	a := l.Absolute()
	limit := ratelimit.Every(50 * time.Millisecond)

	a.Allow(ctx, "job", limit) // takes the window's one unit
	start := time.Now()
	d, err := a.Wait(ctx, "job", limit, 1)
	fmt.Println(d.Allowed, err, time.Since(start) >= 40*time.Millisecond)

	short, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel()
	_, err = a.Wait(short, "job", limit, 1) // fits in ~50 ms: beyond the deadline
	fmt.Println(errors.Is(err, distkit.ErrTimeout))
	// Output:
	// true <nil> true
	// true
}

// A rejection says how long until the same request fits: a caller that
// cannot block (a job queue, an HTTP 429 with Retry-After) schedules the
// retry itself.
func ExampleDecision_retryAfter() {
	ctx := context.Background()
	l, _ := ratelimit.NewLocal(ratelimit.Options{})
	defer l.Close(ctx)
	limit := ratelimit.PerMinute(2)

	for i := range 3 {
		d, _ := l.Absolute().Inc(ctx, "export:acme", limit, 1)
		if !d.Allowed {
			fmt.Printf("request %d: retry in about %v\n", i+1, d.RetryAfter.Round(time.Minute))
			continue // e.g. requeue the job with this delay
		}
		fmt.Printf("request %d: run\n", i+1)
	}
	// Output:
	// request 1: run
	// request 2: run
	// request 3: retry in about 1m0s
}

func ExampleAbsolute_Peek() {
	ctx := context.Background()
	l, _ := ratelimit.NewRedis(memory.New(memory.Options{}), ratelimit.Options{})
	defer l.Close(ctx)
	limit := ratelimit.PerMinute(100)

	l.Absolute().Inc(ctx, "user-7", limit, 30)
	st, _ := l.Absolute().Peek(ctx, "user-7", limit) // consumes nothing
	fmt.Println(st.Count, st.Remaining, st.RetryAfter)
	st, _ = l.Absolute().Peek(ctx, "user-7", limit)
	fmt.Println(st.Count, st.Remaining)
	// Output:
	// 30 70 0s
	// 30 70
}

func ExampleRedis_Reset() {
	ctx := context.Background()
	l, _ := ratelimit.NewRedis(memory.New(memory.Options{}), ratelimit.Options{})
	defer l.Close(ctx)
	limit := ratelimit.PerHour(1)

	fmt.Println(l.Absolute().Allow(ctx, "user-7", limit))
	fmt.Println(l.Absolute().Allow(ctx, "user-7", limit))
	l.Reset(ctx, "user-7") // e.g. after a support ticket
	fmt.Println(l.Absolute().Allow(ctx, "user-7", limit))
	// Output:
	// true <nil>
	// false <nil>
	// true <nil>
}

// SetIf adjusts a window when it is in a given state, e.g. to charge a
// penalty or to clamp what a key has used.
func ExampleRedis_SetIf() {
	ctx := context.Background()
	l, _ := ratelimit.NewRedis(memory.New(memory.Options{}), ratelimit.Options{})
	defer l.Close(ctx)
	limit := ratelimit.PerMinute(10)

	l.Absolute().Inc(ctx, "client", limit, 8)
	// Clamp to 5 if it used more than 5, keeping the buckets' history.
	cur, prev, _ := l.SetIf(ctx, "client", limit, distkit.Gt(5), 5, ratelimit.KeepHistory)
	fmt.Println(cur, prev)
	// Not matched (5 is not above 5): unchanged.
	cur, prev, _ = l.SetIf(ctx, "client", limit, distkit.Gt(5), 0, ratelimit.KeepHistory)
	fmt.Println(cur, prev)
	// Block it for a full minute from now, whatever it held.
	cur, prev, _ = l.SetIf(ctx, "client", limit, distkit.Always(), limit.N, ratelimit.ReplaceHistory)
	fmt.Println(cur, prev)
	// Output:
	// 5 8
	// 5 5
	// 10 5
}
