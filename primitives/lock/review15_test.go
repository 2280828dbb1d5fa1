package lock_test

import (
	"context"
	"errors"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/lock"
)

// A guard must never count its lease held past its deadline (send time of
// the last confirmed request + TTL − margin), whether or not its expiry
// timer has run yet: a goroutine that checks State or derives a Context
// right after the deadline (the timer's goroutine not scheduled yet: one
// CPU, a process that was paused) must see the lease Lost. Renewals hang
// (the server stopped answering), so no renewal is confirmed.
//
// To show the stale view, the test keeps the only P busy across the
// deadline (GOMAXPROCS 1, no GC, a short spin that sysmon does not
// preempt), so the expiry timer cannot run before the checks.
func TestReview15_NoHeldViewPastDeadline(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	const ttl = 300 * time.Millisecond
	margin := ttl/100 + 2*time.Millisecond
	ctx := context.Background()
	stale := 0
	for round := range 3 {
		hb := testkit.NewHang(memory.New(memory.Options{}))
		m, err := lock.NewMutex(hb, "res", lock.Options{TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		hb.HangOn(func(n string) bool { return n == "RenewLease" })
		g, err := m.TryLock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The guard's deadline is at most this (its send time was earlier).
		deadline := time.Now().Add(ttl - margin)
		time.Sleep(time.Until(deadline.Add(-4 * time.Millisecond)))
		for time.Now().Before(deadline.Add(time.Millisecond)) { // keep the P
		}
		st := g.State()
		work := g.Context(ctx)
		cause := context.Cause(work)
		if st != lock.Lost || cause == nil {
			stale++
			t.Errorf("round %d: %v past the deadline: State %v, Context cause %v; want Lost, cancelled",
				round, time.Since(deadline), st, cause)
		} else if !errors.Is(cause, distkit.ErrLeaseLost) {
			t.Errorf("round %d: cause %v, want ErrLeaseLost", round, cause)
		}
		hb.HangOn(nil)
		g.Release(ctx)
	}
	t.Logf("%d of 3 rounds saw a held view past the deadline", stale)
}

// The same for a context derived before the deadline, as Do hands to its
// fn: a holder that checks work.Err() before a write, right after the
// deadline and before the expiry timer ran, must see it cancelled, with a
// cause matching distkit.ErrLeaseLost.
func TestReview15_DerivedContextErrPastDeadline(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	const ttl = 300 * time.Millisecond
	margin := ttl/100 + 2*time.Millisecond
	ctx := context.Background()
	stale := 0
	for round := range 3 {
		hb := testkit.NewHang(memory.New(memory.Options{}))
		m, err := lock.NewMutex(hb, "res", lock.Options{TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		hb.HangOn(func(n string) bool { return n == "RenewLease" })
		g, err := m.TryLock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(ttl - margin)
		work := g.Context(ctx)
		time.Sleep(time.Until(deadline.Add(-4 * time.Millisecond)))
		for time.Now().Before(deadline.Add(time.Millisecond)) { // keep the P
		}
		if err := work.Err(); err == nil {
			stale++
			t.Errorf("round %d: %v past the deadline: work.Err() is nil; want cancelled", round, time.Since(deadline))
		} else if !errors.Is(context.Cause(work), distkit.ErrLeaseLost) {
			t.Errorf("round %d: cause %v, want ErrLeaseLost", round, context.Cause(work))
		}
		hb.HangOn(nil)
		g.Release(ctx)
	}
	t.Logf("%d of 3 rounds saw a live context past the deadline", stale)
}

// A lease lost at its deadline while a renewal still waits for its reply
// (the server stopped answering; a driver that does not honour the
// renewal's deadline) must say so in its cause, wrapping the renewal's
// outcome (unknown: distkit.ErrIndeterminate), rather than blame a pause of
// the process: the cause is what an operator reads.
func TestReview15_LossCauseNamesUnansweredRenewal(t *testing.T) {
	ctx := context.Background()
	f := testkit.NewFaulty(memory.New(memory.Options{}))
	rw, err := lock.NewRWMutex(f, "res", lock.Options{TTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	g, err := rw.RLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	work := g.Context(ctx)
	h := f.HangScript("lock-renew-shared")
	defer h.Release()
	select {
	case <-g.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("not lost by the deadline")
	}
	cause := context.Cause(work)
	if !errors.Is(cause, distkit.ErrLeaseLost) || !errors.Is(cause, distkit.ErrIndeterminate) ||
		strings.Contains(cause.Error(), "paused") {
		t.Errorf("cause %q: want ErrLeaseLost wrapping ErrIndeterminate (a renewal got no reply), not a pause", cause)
	}
	h.Release()
	g.Release(ctx)
}
