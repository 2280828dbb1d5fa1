package semaphore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/semaphore"
)

// At most 2 of 5 jobs run at once; every job's permit has its own lease
// and fencing token.
func ExampleSemaphore() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()
	s, err := semaphore.New(b, "exports", 2, semaphore.Options{TTL: 10 * time.Second})
	if err != nil {
		panic(err)
	}
	var mu sync.Mutex
	running, peak := 0, 0
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := s.Acquire(ctx, 1)
			if err != nil {
				panic(err)
			}
			defer p.Release(ctx)
			mu.Lock()
			running++
			peak = max(peak, running)
			mu.Unlock()
			time.Sleep(10 * time.Millisecond) // the job
			mu.Lock()
			running--
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Println("most jobs at once:", peak)
	// Output:
	// most jobs at once: 2
}

// A weighted request holds several units; a request that does not fit
// fails at once with TryAcquire, and one for more than the capacity is an
// error, not a wait that could never end.
func ExampleSemaphore_TryAcquire() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()
	s, _ := semaphore.New(b, "upstream-connections", 4, semaphore.Options{})

	p, err := s.TryAcquire(ctx, 3)
	fmt.Println("3 units:", err, p.N())
	_, err = s.TryAcquire(ctx, 2)
	fmt.Println("2 more:", errors.Is(err, distkit.ErrNotAcquired))
	_, err = s.Acquire(ctx, 5)
	fmt.Println("5 of 4:", errors.Is(err, distkit.ErrInvalidOption))
	used, _ := s.Used(ctx)
	fmt.Println("used:", used)
	st, err := p.Release(ctx)
	fmt.Println(st, err)
	// Output:
	// 3 units: <nil> 3
	// 2 more: true
	// 5 of 4: true
	// used: 3
	// Released <nil>
}
