package lock_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/lock"
)

// Review 21: 8 Mutex and 4 RWMutex-writer contenders plus 4 readers on one
// lock, with waits cut short at random (timeouts shorter than a hand-off,
// cancellations), TryLock mixed in: a non-atomic witness never sees two
// holders (or a writer beside a reader), exclusive tokens rise strictly in
// the order the holders got in, and the lock keeps changing hands (nobody
// is left holding a lock handed to a waiter that gave up beyond its mark).
func TestReview21_ExclusionUnderCancellations(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	opts := lock.Options{RetryInterval: 5 * time.Millisecond, TTL: 2 * time.Second}
	var (
		mu       sync.Mutex
		inside   int // non-atomic witness, checked under mu only to read it
		readers  atomic.Int32
		last     int64
		acquired atomic.Int64
	)
	stop := time.Now().Add(1500 * time.Millisecond)
	var wg sync.WaitGroup
	critical := func(t *testing.T, g *lock.Guard) {
		mu.Lock()
		if inside != 0 || readers.Load() != 0 {
			t.Errorf("token %d got in beside %d holders and %d readers", g.Token(), inside, readers.Load())
		}
		if g.Token() <= last {
			t.Errorf("token %d after %d", g.Token(), last)
		}
		last = g.Token()
		inside++
		mu.Unlock()
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		mu.Lock()
		inside--
		mu.Unlock()
		acquired.Add(1)
	}
	for w := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lk func(ctx context.Context) (*lock.Guard, error)
			var try func(ctx context.Context) (*lock.Guard, error)
			if w < 8 {
				m := testkit.NewMutex(t, b, "ex", opts)
				lk, try = m.Lock, m.TryLock
			} else {
				rw := testkit.NewRWMutex(t, b, "ex", opts)
				lk, try = rw.Lock, rw.TryLock
			}
			for time.Now().Before(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+rand.IntN(30))*time.Millisecond)
				var g *lock.Guard
				var err error
				if rand.IntN(5) == 0 {
					g, err = try(ctx)
				} else {
					g, err = lk(ctx)
				}
				cancel()
				if err != nil {
					continue
				}
				critical(t, g)
				if _, err := g.Release(context.Background()); err != nil {
					t.Errorf("release: %v", err)
				}
			}
		}()
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rw := testkit.NewRWMutex(t, b, "ex", opts)
			for time.Now().Before(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+rand.IntN(30))*time.Millisecond)
				g, err := rw.RLock(ctx)
				cancel()
				if err != nil {
					continue
				}
				mu.Lock()
				if inside != 0 {
					t.Errorf("reader got in beside a writer")
				}
				readers.Add(1)
				mu.Unlock()
				time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
				readers.Add(-1)
				g.Release(context.Background())
			}
		}()
	}
	wg.Wait()
	t.Logf("%d exclusive acquisitions", acquired.Load())
	if acquired.Load() < 50 {
		t.Errorf("only %d exclusive acquisitions in 1.5 s: the lock got stuck", acquired.Load())
	}
}
