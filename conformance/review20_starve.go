package conformance

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/semaphore"
)

// testReview20BigNotStarved: a request for all 4 units, made while 4
// goroutines on their own clients keep taking 1 unit each (hold 10 ms,
// release, take again), gets in: "a request for many units is not starved
// by a stream of small ones: once it is first in line, the small ones
// wait behind it". It must get in within 3 s (each small holder releases
// within 10 ms; those queued ahead of it are at most 4), and while it
// waits, at most the small requests already in line when it queued (4)
// plus those holding then (4) get in ahead of it.
func testReview20BigNotStarved(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	opts := semaphore.Options{Prefix: p, TTL: 5 * time.Second}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var grants atomic.Int64
	for range 4 {
		s := newSem(t, open(t, h), "res", 4, opts)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				pm, err := s.Acquire(cctx, 1)
				cancel()
				if err != nil {
					continue
				}
				grants.Add(1)
				time.Sleep(10 * time.Millisecond)
				pm.Release(ctx)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	testkit.Pass(t, h, 200*time.Millisecond) // the stream is flowing
	big := newSem(t, open(t, h), "res", 4, opts)
	before := grants.Load()
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	pm, err := big.Acquire(cctx, 4)
	overtook := grants.Load() - before
	if err != nil {
		t.Fatalf("Acquire(4) behind a stream of Acquire(1): %v after %v (%d small grants meanwhile)", err, time.Since(start), overtook)
	}
	releasePermit(t, pm)
	if overtook > 8 {
		t.Errorf("%d small requests got in while the big one waited %v: want at most 8", overtook, time.Since(start))
	}
	t.Logf("the big request waited %v; %d small grants meanwhile", time.Since(start), overtook)
}
