package driver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/driver"
)

// A subscriber that joins a channel whose server subscription another
// subscriber is still opening must not fail because that other one gave
// up (its wait ended, it acquired the lock): the subscription must be made
// for whoever still wants it. Otherwise every waiter that joined meanwhile
// gets the opener's context error and falls back to polling (the lock
// package retries a failed subscription only after a second), so a
// hand-off costs RetryInterval instead of a round trip.
func TestReview15_FanoutOpenerGivingUpDoesNotFailOthers(t *testing.T) {
	opening := make(chan struct{}, 8)
	confirm := make(chan struct{})
	stopped := make(chan struct{}, 8)
	f := driver.NewFanout(func(ctx context.Context, ch string) (func(), error) {
		opening <- struct{}{}
		select {
		case <-confirm: // the server confirmed the SUBSCRIBE
			return func() { stopped <- struct{}{} }, nil
		case <-ctx.Done():
			return nil, driver.NotApplied(ctx.Err())
		}
	})
	defer f.Close()
	actx, acancel := context.WithCancel(context.Background())
	aerr := make(chan error, 1)
	go func() {
		_, unsub, err := f.Subscribe(actx, "c")
		if err == nil {
			unsub()
		}
		aerr <- err
	}()
	<-opening // A opens the server subscription
	type result struct {
		ch    <-chan struct{}
		unsub func()
		err   error
	}
	bres := make(chan result, 1)
	bctx, bcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer bcancel()
	go func() {
		ch, unsub, err := f.Subscribe(bctx, "c")
		bres <- result{ch, unsub, err}
	}()
	time.Sleep(50 * time.Millisecond) // B joined A's topic (not observable)
	acancel()                         // A gives up
	if err := <-aerr; !errors.Is(err, context.Canceled) {
		t.Logf("A: %v", err)
	}
	// The server answers the subscription that is (still, or again) being
	// opened for B.
	select {
	case <-opening:
	case <-time.After(100 * time.Millisecond):
	}
	close(confirm)
	r := <-bres
	if r.err != nil {
		t.Fatalf("B, still waiting with a live ctx, failed to subscribe because A gave up: %v", r.err)
	}
	f.Deliver("c")
	select {
	case <-r.ch:
	case <-time.After(time.Second):
		t.Fatal("B is not notified")
	}
	r.unsub()
}
