package lock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/lock"
)

// fencedStore is a resource that stays safe even when two processes both
// believe they hold the lock: it rejects writes with a token lower than one
// it has already seen.
type fencedStore struct {
	mu      sync.Mutex
	highest int64
	data    []string
}

func (s *fencedStore) Write(token int64, v string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token < s.highest {
		return fmt.Errorf("stale token rejected")
	}
	s.highest = token
	s.data = append(s.data, v)
	return nil
}

func ExampleMutex() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	store := &fencedStore{}

	m, err := lock.NewMutex(b, "orders-42", lock.Options{TTL: 10 * time.Second})
	if err != nil {
		panic(err)
	}
	g, err := m.Lock(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("first holder writes:", store.Write(g.Token(), "a"))
	stale := g.Token()
	g.Release(ctx)

	g2, _ := m.Lock(ctx)
	fmt.Println("tokens increase:", g2.Token() > stale)
	fmt.Println("second holder writes:", store.Write(g2.Token(), "b"))
	// A holder that was paused past its TTL still has the old token: the
	// store turns it away.
	fmt.Println("stale holder writes:", store.Write(stale, "c"))
	g2.Release(ctx)
	// Output:
	// first holder writes: <nil>
	// tokens increase: true
	// second holder writes: <nil>
	// stale holder writes: stale token rejected
}

func ExampleMutex_TryLock() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	a, _ := lock.NewMutex(b, "job", lock.Options{})
	other, _ := lock.NewMutex(b, "job", lock.Options{})

	g, _ := a.TryLock(ctx)
	_, err := other.TryLock(ctx)
	fmt.Println(errors.Is(err, distkit.ErrNotAcquired))
	_, err = other.TryLockWithTimeout(ctx, 20*time.Millisecond)
	fmt.Println(errors.Is(err, distkit.ErrTimeout))
	_, err = other.TryLockWithRetries(ctx, 2)
	var re *distkit.RetriesError
	fmt.Println(errors.As(err, &re), re.Attempts)

	state, err := g.Release(ctx)
	fmt.Println(state, err)
	// Output:
	// true
	// true
	// true 3
	// Released <nil>
}

func ExampleGuard_Context() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	m, _ := lock.NewMutex(b, "report", lock.Options{TTL: 300 * time.Millisecond})
	g, _ := m.Lock(ctx)

	work := g.Context(ctx) // cancelled if the lease is lost
	b.Advance(time.Second) // the lease expires (a long pause, a partition…)
	<-work.Done()
	fmt.Println(g.State(), errors.Is(context.Cause(work), distkit.ErrLeaseLost))
	_, err := g.Release(ctx)
	fmt.Println(errors.Is(err, distkit.ErrNotHeld))
	// Output:
	// Lost true
	// true
}

func ExampleRWMutex() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	rw, _ := lock.NewRWMutex(b, "config", lock.Options{})

	r1, _ := rw.RLock(ctx)
	r2, err := rw.TryRLock(ctx)
	fmt.Println("two readers:", err == nil)
	_, err = rw.TryLock(ctx)
	fmt.Println("writer while reading:", err)
	r1.Release(ctx)
	r2.Release(ctx)
	w, err := rw.TryLock(ctx)
	fmt.Println("writer after readers:", err == nil)
	w.Release(ctx)
	// Output:
	// two readers: true
	// writer while reading: lock "config": distkit: not acquired
	// writer after readers: true
}
