package lock_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/obs"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/lock"
)

// TestLockObservability: wait time by result; a failed renewal is
// reported once (lease_renew_failing) and counted, its recovery reported;
// a lost lease is reported (lease_lost), counted, and its hold time
// recorded with end "lost"; a released one with end "released"; a waiter
// that gets the lock on its release counts as a hand-off.
func TestLockObservability(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	defer mem.Close()
	tel := testkit.NewTelemetry(t)
	opts := lock.Options{Prefix: "obs", TTL: time.Second, Logger: tel.Logger, Observer: tel, MeterProvider: tel.Provider}
	b := testkit.Wrap(mem) // counts the acquire attempts (and hides the Notifier: waiters poll)
	m := testkit.NewMutex(t, b, "res", opts)
	prefix := obs.AttrPrefix.String("obs")
	mode := obs.AttrMode.String("exclusive")

	g, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.TryLock(ctx); !errors.Is(err, distkit.ErrNotAcquired) {
		t.Fatalf("TryLock on a held lock: %v", err)
	}
	// The next backend operation is the renewal (every TTL/3): it fails,
	// the retry (TTL/10 later) succeeds.
	mem.FailNext(1, errors.New("injected"))
	ev := tel.WaitEvent(t, distkit.LeaseRenewFailing, 1, 10*time.Second)
	if ev.Primitive != "lock" || ev.Name != "res" || !errors.Is(ev.Err, distkit.ErrNotApplied) {
		t.Errorf("event %+v", ev)
	}
	tel.WaitEvent(t, distkit.LeaseRenewRecovered, 1, 10*time.Second)
	if st := g.State(); st != lock.Acquired {
		t.Fatalf("state %v after a recovered renewal", st)
	}
	// A waiter gets the lock when it is released: a hand-off.
	got := make(chan error, 1)
	go func() {
		g2, err := m.Lock(ctx)
		if err == nil {
			_, err = g2.Release(ctx)
		}
		got <- err
	}()
	testkit.Eventually(t, 10*time.Second, "the waiter's first attempt", func() bool {
		return b.Finished("lock-acquire") >= 3 // Lock, TryLock, the waiter's
	})
	if _, err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}

	// A lost lease: the data is gone, the next renewal is refused.
	g, err = m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mem.FlushAll()
	select {
	case <-g.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("lease not lost")
	}
	ev = tel.WaitEvent(t, distkit.LeaseLost, 1, 10*time.Second)
	if !errors.Is(ev.Err, distkit.ErrLeaseLost) {
		t.Errorf("lease_lost cause %v", ev.Err)
	}
	g.Release(ctx)

	want := []string{"WARN lease_renew_failing", "INFO lease_renew_recovered", "WARN lease_lost"}
	if got := tel.LogEvents(t); !slices.Equal(got, want) {
		t.Errorf("log lines %v, want %v", got, want)
	}
	ms := tel.Collect(t)
	for _, c := range []struct {
		name string
		want float64
		kv   []any
	}{
		{obs.LockWaitDuration, 3, []any{obs.AttrResult.String("acquired")}},
		{obs.LockWaitDuration, 1, []any{obs.AttrResult.String("not_acquired")}},
		{obs.LockHoldDuration, 2, []any{obs.AttrEnd.String("released")}},
		{obs.LockHandoffs, 1, nil},
		{obs.LockHoldDuration, 1, []any{obs.AttrEnd.String("lost")}},
		{obs.LockLeasesLost, 1, nil},
		{obs.LockRenewFailures, 1, []any{obs.AttrOutcome.String("not_applied")}},
	} {
		kvs := append([]any{prefix}, c.kv...)
		if c.name == obs.LockWaitDuration || c.name == obs.LockHoldDuration {
			kvs = append(kvs, mode)
		}
		if v, _ := ms[c.name].Value(testkit.KVs(kvs...)...); v != c.want {
			t.Errorf("%s %v: %v, want %v", c.name, c.kv, v, c.want)
		}
	}
	if u := ms[obs.LockWaitDuration].Unit; u != "s" {
		t.Errorf("wait unit %q", u)
	}
}
