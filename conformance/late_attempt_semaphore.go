package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/semscript"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/semaphore"
)

// testSemLateAttempt: "a wait that ends without a permit leaves nothing
// behind", even when its last attempt reaches the server after the wait
// gave up. A driver that returns at the wait's cancellation (go-redis) may
// already have written the attempt, which the server can run after the
// give-up sent on another connection. That late attempt must neither put
// the departed waiter back in line (its mark, 3×RetryInterval, would block
// the line for hours) nor take units (held until its lease expires).
func testSemLateAttempt(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	probe := open(t, h)
	for _, grant := range []bool{false, true} {
		name := "queued"
		if grant {
			name = "granted"
		}
		k := keyspace.Semaphore(p, name)
		holder := newSem(t, open(t, h), name, 2, semaphore.Options{Prefix: p})
		ph, err := holder.Acquire(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		w := testkit.Wrap(open(t, h))
		waiter := newSem(t, w, name, 2, semaphore.Options{Prefix: p, RetryInterval: time.Hour})
		late := w.SendLateNext(semscript.Acquire.Name())
		wctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() {
			_, err := waiter.Acquire(wctx, 2)
			errc <- err
		}()
		select {
		case <-late.Entered:
		case err := <-errc:
			cancel()
			t.Fatalf("%s: the wait ended before its first attempt: %v", name, err)
		case <-time.After(5 * time.Second):
			cancel()
			<-errc
			late.Deliver()
			t.Fatalf("%s: no attempt within 5s", name)
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			late.Deliver()
			<-late.Done
			t.Fatalf("%s: cancelled wait: %v", name, err)
		}
		testkit.Eventually(t, 5*time.Second, name+": the give-up ran", func() bool {
			return w.Finished(semscript.GiveUp.Name()) > 0
		})
		if grant {
			releasePermit(t, ph) // the late attempt finds the units free
		}
		late.Deliver()
		<-late.Done
		if n := evalInt(t, probe, zcardScript, []string{k.Queue}); n != 0 {
			t.Errorf("%s: %d waiters in line after the departed waiter's late attempt ran, want 0 (it re-entered the line with a 3 h mark)", name, n)
		}
		if used, err := holder.Used(ctx); err != nil || used != 0 && grant {
			t.Errorf("%s: %d units used (%v) after the departed waiter's late attempt ran, want 0 (it took them for its lease's TTL)", name, used, err)
		}
		if !grant {
			releasePermit(t, ph)
		}
		other := newSem(t, open(t, h), name, 2, semaphore.Options{Prefix: p})
		po, err := other.TryAcquire(ctx, 2)
		if err != nil {
			t.Errorf("%s: TryAcquire(2) of a free semaphore after the departed waiter's late attempt: %v", name, err)
			continue
		}
		releasePermit(t, po)
	}
}
