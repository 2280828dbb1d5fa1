package semaphore_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/semaphore"
)

// latent delays every script by d before it reaches the server, as a
// distant Redis would (and hides the Notifier: the waiter polls).
type latent struct {
	backend.Backend
	d time.Duration
}

func (l latent) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	select {
	case <-time.After(l.d):
	case <-ctx.Done():
		return backend.Value{}, ctx.Err()
	}
	return l.Backend.EvalScript(ctx, s, keys, args...)
}

// TestReview20_WaiterKeepsPlaceOverSlowLink: "a waiter keeps its place by
// refreshing a waiting mark on every attempt … the mark of a waiter that
// died expires" — a live waiter must not drop out of line because its
// round trip is long. A request for 4 units of 4 waits (1 is held) over a
// link with 120 ms of latency; meanwhile TryAcquire(1) of the free unit,
// from a client next to the server, must keep failing ("TryAcquire never
// queues, and fails while anyone is queued"): a success means the big
// request lost its place and a stream of small ones overtakes it.
func TestReview20_WaiterKeepsPlaceOverSlowLink(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()
	near, err := semaphore.New(b, "res", 4, semaphore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	held, err := near.Acquire(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	far, err := semaphore.New(latent{b, 120 * time.Millisecond}, "res", 4, semaphore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		p, err := far.Acquire(wctx, 4)
		if err == nil {
			p.Release(ctx)
		}
		done <- err
	}()
	defer func() { cancel(); <-done }()
	// Once the big request is in line, TryAcquire(1) is refused.
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := near.TryAcquire(ctx, 1)
		if errors.Is(err, distkit.ErrNotAcquired) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p.Release(ctx)
		if time.Now().After(deadline) {
			t.Fatal("the big request never queued")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var overtook atomic.Int64
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) {
		if p, err := near.TryAcquire(ctx, 1); err == nil {
			overtook.Add(1)
			p.Release(ctx)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := overtook.Load(); n > 0 {
		t.Errorf("TryAcquire(1) succeeded %d times in 2 s while a live request for 4 units was queued (its mark lapsed between attempts over a 120 ms link)", n)
	}
	held.Release(ctx)
}
