package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/primitives/lock"
)

var existsScript = driver.NewScript("conf-exists", `return redis.call('EXISTS', KEYS[1])`,
	func(st driver.Store, keys, _ []string) (backend.Value, error) {
		if st.Exists(keys[0]) {
			return backend.Int(1), nil
		}
		return backend.Int(0), nil
	})

// testReleasePublishesOnlyWhenWaited: a release publishes a wake-up on the
// lock's channel only while someone waits for the lock, so an uncontended
// Lock + Release costs no PUBLISH (which a Cluster broadcasts to every
// node); with a waiter, the release publishes and wakes it.
func testReleasePublishesOnlyWhenWaited(t *testing.T, h Harness) {
	b := open(t, h)
	n, ok := b.(backend.Notifier)
	if !ok {
		t.Skip("backend is not a Notifier")
	}
	ctx := context.Background()
	p := prefix(t)
	k := keyspace.Lock(p, "res")
	ch, unsub, err := n.Subscribe(ctx, k.Channel)
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	opts := lock.Options{Prefix: p, RetryInterval: 2 * time.Second}
	m := newMutex(t, b, "res", opts)
	for range 3 {
		g, err := m.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		release(t, g)
	}
	rw := newRW(t, b, "res", opts)
	if g, err := rw.RLock(ctx); err != nil {
		t.Fatal(err)
	} else {
		release(t, g)
	}
	select {
	case <-ch:
		t.Fatal("a release nobody waited for published a wake-up")
	case <-time.After(150 * time.Millisecond):
	}
	if evalInt(t, b, existsScript, []string{k.Waiters}) != 0 {
		t.Fatal("an uncontended Lock marked the lock as waited for")
	}

	g, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waiter := newMutex(t, open(t, h), "res", opts)
	got := make(chan error, 1)
	go func() {
		g2, err := waiter.Lock(ctx)
		if err == nil {
			_, err = g2.Release(ctx)
		}
		got <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); evalInt(t, b, existsScript, []string{k.Waiters}) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("a waiting Lock did not mark the lock as waited for")
		}
		time.Sleep(5 * time.Millisecond)
	}
	release(t, g)
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("a release with a waiter did not publish")
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter never acquired")
	}
}
