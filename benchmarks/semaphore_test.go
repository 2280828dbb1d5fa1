package benchmarks

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit/primitives/election"
	"github.com/distkit-go/distkit/primitives/semaphore"
)

// BenchmarkSemaphoreContended: each op is a round in which 8 goroutines
// (each with its own Semaphore value, as separate processes would have)
// all want 1 unit of a capacity-4 semaphore at once and each takes it
// once. acq/s counts acquisitions (compare BenchmarkMutexHandoff).
func BenchmarkSemaphoreContended(b *testing.B) {
	ctx := context.Background()
	const contenders = 8
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) {
			bk := be.new(b)
			name := lockName()
			ss := make([]*semaphore.Semaphore, contenders)
			for i := range ss {
				s, err := semaphore.New(bk, name, 4, semaphore.Options{})
				if err != nil {
					b.Fatal(err)
				}
				ss[i] = s
			}
			start := time.Now()
			for b.Loop() {
				var wg sync.WaitGroup
				for _, s := range ss {
					wg.Add(1)
					go func() {
						defer wg.Done()
						p, err := s.Acquire(ctx, 1)
						if err != nil {
							b.Error(err)
							return
						}
						p.Release(ctx)
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(b.N*contenders)/time.Since(start).Seconds(), "acq/s")
		})
	}
}

// BenchmarkElectionHandoff: each op is one term handed over: the leader
// resigns while the next candidate campaigns (it finds the term free, or
// is woken by the resignation's message). ns/op is a Resign and the next
// term's Campaign. The leader-killed failover (bounded by the TTL) is
// measured by make bench.
func BenchmarkElectionHandoff(b *testing.B) {
	ctx := context.Background()
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) {
			bk := be.new(b)
			name := lockName()
			e1, err := election.New(bk, name, election.Options{})
			if err != nil {
				b.Fatal(err)
			}
			e2, _ := election.New(bk, name, election.Options{})
			l, err := e1.Campaign(ctx, "a")
			if err != nil {
				b.Fatal(err)
			}
			next := e2
			for b.Loop() {
				got := make(chan *election.Leadership, 1)
				go func() {
					nl, err := next.Campaign(ctx, "x")
					if err != nil {
						b.Error(err)
					}
					got <- nl
				}()
				l.Resign(ctx)
				if l = <-got; l == nil {
					return
				}
				if next == e2 {
					next = e1
				} else {
					next = e2
				}
			}
			l.Resign(ctx)
		})
	}
}
