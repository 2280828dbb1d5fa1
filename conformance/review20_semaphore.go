package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/primitives/semaphore"
)

// pollOnly hides a backend's Notifier: a client that only polls.
type pollOnly struct{ backend.Backend }

// testReview20QueueKeptForSlowPoller: a waiter keeps its place in line for
// as long as its own mark lives (3×its RetryInterval), whatever another
// waiter with a shorter RetryInterval does: "a waiter keeps its place by
// refreshing a waiting mark on every attempt … the mark of a waiter that
// died expires after max(3×RetryInterval, 150 ms)", and "TryAcquire …
// fails while anyone is queued". A waiter polling every 2 s is queued;
// another one, polling every 10 ms, queues behind it and gives up; 400 ms
// later the first waiter (alive, its mark valid for 6 s) must still be in
// line, so TryAcquire of a free unit is refused.
func testReview20QueueKeptForSlowPoller(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	holder := newSem(t, open(t, h), "res", 2, semaphore.Options{Prefix: p, TTL: time.Hour})
	ph, err := holder.Acquire(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer releasePermit(t, ph)
	slow := newSem(t, pollOnly{open(t, h)}, "res", 2, semaphore.Options{Prefix: p, RetryInterval: 2 * time.Second})
	wctx, cancel := context.WithCancel(ctx)
	waited := make(chan error, 1)
	go func() {
		pm, err := slow.Acquire(wctx, 2)
		if err == nil {
			pm.Release(ctx)
		}
		waited <- err
	}()
	defer func() {
		cancel()
		<-waited
	}()
	admin := open(t, h)
	queue := keyspace.Semaphore(p, "res").Queue
	eventually(t, 5*time.Second, "the slow waiter queues", func() bool {
		v, err := admin.EvalScript(ctx, zcardScript, []string{queue})
		n, _ := v.Int64()
		return err == nil && n == 1
	})
	fast := newSem(t, open(t, h), "res", 2, semaphore.Options{Prefix: p, RetryInterval: 10 * time.Millisecond})
	if _, err := fast.TryAcquireWithTimeout(ctx, 1, 100*time.Millisecond); !errors.Is(err, distkit.ErrTimeout) {
		t.Fatalf("the fast waiter: %v, want ErrTimeout (queued behind the slow one)", err)
	}
	h.Wait(t, 400*time.Millisecond)
	other := newSem(t, open(t, h), "res", 2, semaphore.Options{Prefix: p})
	if pm, err := other.TryAcquire(ctx, 1); !errors.Is(err, distkit.ErrNotAcquired) {
		if err == nil {
			pm.Release(ctx)
		}
		t.Errorf("TryAcquire(1) while a live waiter was first in line: %v, want ErrNotAcquired (the waiter lost its place when the fast waiter's shorter mark expired the line)", err)
	}
}
