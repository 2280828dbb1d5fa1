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

func ExampleDo() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	m, _ := lock.NewMutex(b, "invoice-7", lock.Options{})

	err := lock.Do(ctx, m, func(ctx context.Context, token int64) error {
		// ctx is cancelled if the lease is lost; hand token to the store.
		fmt.Println("working under the lock, token > 0:", token > 0)
		return nil
	})
	fmt.Println("Do:", err)
	g, err := m.TryLock(ctx)
	fmt.Println("released afterwards:", err == nil)
	g.Release(ctx)
	// Output:
	// working under the lock, token > 0: true
	// Do: <nil>
	// released afterwards: true
}

// Telling "someone else holds it" from "the backend did not answer": check
// the backend's error classes first.
func ExampleMutex_TryLockWithTimeout() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	holder, _ := lock.NewMutex(b, "report", lock.Options{})
	g, _ := holder.Lock(ctx)

	client := b.Connect() // another process's connection
	m, _ := lock.NewMutex(client, "report", lock.Options{RetryInterval: 5 * time.Millisecond})
	classify := func(err error) string {
		switch {
		case err == nil:
			return "acquired"
		case errors.Is(err, distkit.ErrNotApplied), errors.Is(err, distkit.ErrIndeterminate):
			return "backend unreachable"
		case errors.Is(err, distkit.ErrTimeout):
			return "already locked"
		}
		return err.Error()
	}
	_, err := m.TryLockWithTimeout(ctx, 30*time.Millisecond)
	fmt.Println(classify(err))
	client.FailNext(1000, nil) // this client's connection fails
	_, err = m.TryLockWithTimeout(ctx, 30*time.Millisecond)
	fmt.Println(classify(err), errors.Is(err, distkit.ErrTimeout))
	g.Release(ctx)
	// Output:
	// already locked
	// backend unreachable true
}

func ExampleGuard_Release_nil() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	b.Close()
	m, _ := lock.NewMutex(b, "job", lock.Options{})

	g, err := m.Lock(ctx)
	defer g.Release(ctx) // safe: a nil Guard holds nothing
	fmt.Println(g == nil, errors.Is(err, distkit.ErrClosed))
	_, err = g.Release(ctx)
	fmt.Println(errors.Is(err, distkit.ErrNotHeld))
	// Output:
	// true true
	// true
}
