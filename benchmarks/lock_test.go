package benchmarks

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/primitives/lock"
)

// pollOnly hides a backend's Notifier, leaving waiters to poll.
type pollOnly struct{ backend.Backend }

var lockSeq atomic.Int64

func lockName() string { return "bench-" + strconv.FormatInt(lockSeq.Add(1), 10) }

// BenchmarkMutexUncontended: one goroutine, Lock then Release (two round
// trips), per backend.
func BenchmarkMutexUncontended(b *testing.B) {
	ctx := context.Background()
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) {
			m, err := lock.NewMutex(be.new(b), lockName(), lock.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				g, err := m.Lock(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := g.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMutexHandoff measures hand-off under contention: each op is a
// round in which 8 goroutines (each with its own Mutex value, as separate
// processes would have) all want the lock at once and each takes it once,
// so 7 of the 8 acquisitions wait for a release. "notify" wakes waiters on
// release; "poll" relies on RetryInterval (50 ms) alone. acq/s counts
// acquisitions.
func BenchmarkMutexHandoff(b *testing.B) {
	ctx := context.Background()
	const contenders = 8
	for _, be := range backends(b) {
		for _, variant := range []string{"notify", "poll"} {
			b.Run(be.name+"/"+variant, func(b *testing.B) {
				bk := be.new(b)
				if variant == "poll" {
					bk = pollOnly{bk}
				}
				name := lockName()
				ms := make([]*lock.Mutex, contenders)
				for i := range ms {
					m, err := lock.NewMutex(bk, name, lock.Options{})
					if err != nil {
						b.Fatal(err)
					}
					ms[i] = m
				}
				start := time.Now()
				for b.Loop() {
					var wg sync.WaitGroup
					for _, m := range ms {
						wg.Add(1)
						go func() {
							defer wg.Done()
							g, err := m.Lock(ctx)
							if err != nil {
								b.Error(err)
								return
							}
							g.Release(ctx)
						}()
					}
					wg.Wait()
				}
				b.ReportMetric(float64(b.N*contenders)/time.Since(start).Seconds(), "acq/s")
			})
		}
	}
}
