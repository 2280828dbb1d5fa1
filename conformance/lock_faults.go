package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/primitives/lock"
)

// PubSubKiller is an optional capability of a FaultHarness: killing every
// pub/sub connection on the data servers (CLIENT KILL TYPE pubsub), as a
// server restart, a proxy or a network fault would. RunLockFaults uses it
// to check that notifications come back.
type PubSubKiller interface {
	KillPubSub(t *testing.T)
}

// LockFaultOptions size a RunLockFaults run.
type LockFaultOptions struct {
	// Slack is how far past its budget a bounded wait may end: one round
	// trip plus scheduling (default 1 s, for a loaded 2-core machine running
	// every suite with the race detector at once; the overruns this guards
	// against were 10 s and more, and an isolated run's timings are within
	// a few ms of the budget).
	Slack time.Duration
}

// LockWaitTiming is how long one bounded wait took under one condition.
type LockWaitTiming struct {
	Condition string // "up (held)", "refused", "blackholed", …
	Call      string // "TryLockWithTimeout(500ms)", …
	Budget    time.Duration
	Elapsed   time.Duration
	Err       error
}

func (w LockWaitTiming) String() string {
	return fmt.Sprintf("%-22s %-28s budget %-7v took %v", w.Condition, w.Call, w.Budget, w.Elapsed.Round(time.Millisecond))
}

// RunLockFaults checks the lock's promises under faults on one client kind:
// every wait ends within its budget plus o.Slack with the servers up (lock
// held), refusing connections, blackholed, and going down mid-wait; a
// renewal that fails briefly does not lose the lease; and, when the harness
// is a PubSubKiller, release notifications come back after the pub/sub
// connections are killed; the semaphore's and the election's waits are
// held to the same budgets. It returns the timings for the report.
func RunLockFaults(t *testing.T, h FaultHarness, o LockFaultOptions) []LockWaitTiming {
	if o.Slack <= 0 {
		o.Slack = time.Second
	}
	var timings []LockWaitTiming
	t.Run("BoundedWaits", func(t *testing.T) { timings = testBoundedWaits(t, h, o) })
	t.Run("RenewalBlip", func(t *testing.T) { testRenewalBlip(t, h) })
	t.Run("WakeAfterPubSubKilled", func(t *testing.T) { testWakeAfterPubSubKilled(t, h) })
	t.Run("SemaphoreElectionBoundedWaits", func(t *testing.T) { timings = append(timings, testLeasedBoundedWaits(t, h, o)...) })
	t.Run("Review15_CancelEndsLockDuringReconnect", func(t *testing.T) { testReview15CancelEndsLock(t, h) })
	t.Run("Review15_CancelEndsReleaseDuringReconnect", func(t *testing.T) { testReview15CancelEndsRelease(t, h) })
	t.Run("Review15_AbandonedSubscriptionLeavesNothing", func(t *testing.T) { testReview15AbandonedSubscription(t, h) })
	t.Run("Review20_SemAcquireDuringReconnect", func(t *testing.T) { testReview20AcquireDuringReconnect(t, h) })
	t.Run("Review20_SemReleaseDuringReconnect", func(t *testing.T) { testReview20ReleaseDuringReconnect(t, h) })
	t.Run("Review20_CampaignDuringReconnect", func(t *testing.T) { testReview20CampaignDuringReconnect(t, h) })
	t.Run("Review20_ResignDuringReconnect", func(t *testing.T) { testReview20ResignDuringReconnect(t, h) })
	t.Run("Review20_ObserveEndsDuringReconnect", func(t *testing.T) { testReview20ObserveEndsDuringReconnect(t, h) })
	return timings
}

// lockWaitTTL bounds each attempt (by TTL − 1 % − 2 ms).
const lockWaitTTL = 900 * time.Millisecond

func testBoundedWaits(t *testing.T, h FaultHarness, o LockFaultOptions) []LockWaitTiming {
	p := prefix(t)
	ctx := context.Background()
	holder := newMutex(t, h.Direct(t), "res", lock.Options{Prefix: p, TTL: 30 * time.Second})
	held, err := holder.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, held)
	opts := lock.Options{Prefix: p, TTL: lockWaitTTL, RetryInterval: 50 * time.Millisecond}
	const d = 500 * time.Millisecond
	type call struct {
		name   string
		budget time.Duration
		run    func(m *lock.Mutex, rw *lock.RWMutex) error
	}
	calls := []call{
		{"TryLockWithTimeout(500ms)", d, func(m *lock.Mutex, _ *lock.RWMutex) error {
			_, err := m.TryLockWithTimeout(ctx, d)
			if !errors.Is(err, distkit.ErrTimeout) {
				return fmt.Errorf("want ErrTimeout, got %w", err)
			}
			return nil
		}},
		{"Lock(ctx 500ms)", d, func(m *lock.Mutex, _ *lock.RWMutex) error {
			cctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			_, err := m.Lock(cctx)
			if !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("want DeadlineExceeded, got %w", err)
			}
			return nil
		}},
		{"RW.TryRLockWithTimeout", d, func(_ *lock.Mutex, rw *lock.RWMutex) error {
			_, err := rw.TryRLockWithTimeout(ctx, d)
			if !errors.Is(err, distkit.ErrTimeout) {
				return fmt.Errorf("want ErrTimeout, got %w", err)
			}
			return nil
		}},
	}
	// TryLockWithRetries(n) is bounded by its attempts: each ends within
	// the TTL, and n RetryIntervals separate them (a held lock answers at
	// once; an outage may cost a client's dial attempts).
	retries := func(budget time.Duration) call {
		return call{"TryLockWithRetries(2)", budget, func(m *lock.Mutex, _ *lock.RWMutex) error {
			_, err := m.TryLockWithRetries(ctx, 2)
			if !errors.Is(err, distkit.ErrRetriesExhausted) {
				return fmt.Errorf("want ErrRetriesExhausted, got %w", err)
			}
			return nil
		}}
	}
	conditions := []struct {
		name  string
		calls []call
		fault func()
		mid   bool // the fault starts 200 ms into the wait
	}{
		{"up (held)", append(calls, retries(2*opts.RetryInterval)), nil, false},
		{"refused", append(calls, retries(3*lockWaitTTL+2*opts.RetryInterval)), h.Faults().Cut, false},
		{"blackholed", append(calls, retries(3*lockWaitTTL+2*opts.RetryInterval)), func() { h.Faults().Blackhole(true) }, false},
		{"refused mid-wait", calls[:1], h.Faults().Cut, true},
		{"blackholed mid-wait", calls[:1], func() { h.Faults().Blackhole(true) }, true},
	}
	var out []LockWaitTiming
	for _, c := range conditions {
		for _, cl := range c.calls {
			b, _ := h.NewClient(t)
			m := newMutex(t, b, "res", opts)
			rw := newRW(t, b, "res", opts)
			// Warm the client up (connections, scripts): the lock is held.
			eventually(t, 10*time.Second, "the client answers", func() bool {
				_, err1 := m.TryLock(ctx)
				_, err2 := rw.TryRLock(ctx)
				return errors.Is(err1, distkit.ErrNotAcquired) && errors.Is(err2, distkit.ErrNotAcquired)
			})
			if c.fault != nil && !c.mid {
				c.fault()
			}
			var stopFault *time.Timer
			if c.mid {
				stopFault = time.AfterFunc(200*time.Millisecond, c.fault)
			}
			start := time.Now()
			err := cl.run(m, rw)
			el := time.Since(start)
			if stopFault != nil {
				stopFault.Stop()
			}
			h.Faults().Restore()
			b.Close()
			out = append(out, LockWaitTiming{Condition: c.name, Call: cl.name, Budget: cl.budget, Elapsed: el, Err: err})
			if err != nil {
				t.Errorf("%s, %s: %v", c.name, cl.name, err)
			}
			if el > cl.budget+o.Slack {
				t.Errorf("%s, %s: took %v, budget %v + %v", c.name, cl.name, el, cl.budget, o.Slack)
			}
		}
	}
	var b strings.Builder
	for _, w := range out {
		b.WriteString("\n  " + w.String())
	}
	t.Logf("bounded waits:%s", b.String())
	return out
}

// testRenewalBlip: the holder's connections go dark for 200 ms while a
// renewal is due; the lease had most of its TTL left, so it stays held.
func testRenewalBlip(t *testing.T, h FaultHarness) {
	ctx := context.Background()
	p := prefix(t)
	const ttl = 1500 * time.Millisecond // renewals every 500 ms
	b, _ := h.NewClient(t)
	m := newMutex(t, b, "res", lock.Options{Prefix: p, TTL: ttl})
	g, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	work := g.Context(ctx)
	watchHeld(t, g, work, 400*time.Millisecond, "before the blip")
	h.Faults().Blackhole(true)
	watchHeld(t, g, work, 200*time.Millisecond, "during the blip")
	h.Faults().Restore()
	watchHeld(t, g, work, ttl, "after the blip")
	if _, err := newMutex(t, h.Direct(t), "res", lock.Options{Prefix: p}).TryLock(ctx); !errors.Is(err, distkit.ErrNotAcquired) {
		t.Fatalf("another client while the lease is held: %v", err)
	}
	release(t, g)
}

// testWakeAfterPubSubKilled: waiters that subscribed to releases before
// every pub/sub connection was killed are still woken by a release, in
// about a round trip rather than at their next poll; so is a new waiter;
// and a release published while the subscription was down is made up for
// by the wake-up that follows the re-subscription.
func testWakeAfterPubSubKilled(t *testing.T, h FaultHarness) {
	k, ok := h.(PubSubKiller)
	if !ok {
		t.Skip("harness cannot kill pub/sub connections")
	}
	ctx := context.Background()
	p := prefix(t)
	b, _ := h.NewClient(t)
	if _, ok := b.(backend.Notifier); !ok {
		t.Skip("backend is not a Notifier")
	}
	opts := lock.Options{Prefix: p, RetryInterval: 5 * time.Second} // polling alone: 5 s
	direct := newMutex(t, h.Direct(t), "res", opts)
	waiter := newMutex(t, b, "res", opts)
	// kill: 0 no kill; 1 kill, then release once the driver had time to
	// subscribe again; 2 kill and release at once (the release's message
	// is lost: the re-subscription must wake the waiter).
	handoff := func(round string, kill int) {
		g, err := direct.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 8*time.Second)
		defer cancel()
		type result struct {
			at  time.Time
			err error
		}
		got := make(chan result, 1)
		go func() {
			g2, err := waiter.Lock(wctx)
			if err == nil {
				g2.Release(ctx)
			}
			got <- result{time.Now(), err}
		}()
		time.Sleep(300 * time.Millisecond) // the waiter tried and subscribed
		if kill > 0 {
			k.KillPubSub(t)
		}
		if kill == 1 {
			time.Sleep(time.Second) // time for the driver to reconnect and resubscribe
		}
		released := time.Now()
		release(t, g)
		r := <-got
		switch d := r.at.Sub(released); {
		case r.err != nil:
			t.Errorf("%s: the waiter did not acquire: %v", round, r.err)
		case d > time.Second:
			t.Errorf("%s: hand-off took %v: the waiter was not woken", round, d)
		default:
			t.Logf("%s: hand-off in %v", round, d)
		}
	}
	handoff("before the kill", 0)
	handoff("waiting across the kill", 1)
	handoff("a new waiter after the kill", 0)
	handoff("released right after the kill", 2)
}

// review15Reconnect makes b's connection to the lock's server die (the
// next request naming the lock's prefix p is reset before it is written)
// and then blackholes every byte, so that b's next call must dial a new
// connection whose handshake gets no answer.
func review15Reconnect(t *testing.T, h FaultHarness, b backend.Backend, p string) {
	t.Helper()
	h.Faults().ResetBeforeWrite(p)
	probe := newMutex(t, b, "probe", lock.Options{Prefix: p})
	if g, err := probe.TryLock(context.Background()); err == nil {
		t.Fatalf("the probe's request was not reset (guard %v)", g.State())
	}
	h.Faults().Blackhole(true)
}

// testReview15CancelEndsLock: Lock(ctx) with a cancellable ctx that has no
// deadline ends soon after ctx is cancelled, even while the client
// reconnects to a server that does not answer ("every wait honours its own
// budget (timeout / attempts / ctx) through every I/O it does").
func testReview15CancelEndsLock(t *testing.T, h FaultHarness) {
	p := prefix(t)
	ctx := context.Background()
	holder := newMutex(t, h.Direct(t), "res", lock.Options{Prefix: p, TTL: 30 * time.Second})
	held, err := holder.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, held)
	b, _ := h.NewClient(t)
	m := newMutex(t, b, "res", lock.Options{Prefix: p, TTL: 30 * time.Second})
	if _, err := m.TryLock(ctx); !errors.Is(err, distkit.ErrNotAcquired) {
		t.Fatalf("warm-up: %v", err)
	}
	review15Reconnect(t, h, b, p)
	defer h.Faults().Restore()
	cctx, cancel := context.WithCancel(ctx)
	const after, slack = 300 * time.Millisecond, 700 * time.Millisecond
	stop := time.AfterFunc(after, cancel)
	defer stop.Stop()
	start := time.Now()
	_, err = m.Lock(cctx)
	el := time.Since(start)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Lock: %v, want context.Canceled", err)
	}
	if el > after+slack {
		t.Errorf("Lock returned %v after its ctx was cancelled (at %v): want within %v", el-after, after, slack)
	}
}

// testReview15CancelEndsRelease: Guard.Release(ctx) returns soon after
// ctx is cancelled (it then reports the backend's error, and may be called
// again), even while the client reconnects to a server that does not
// answer: a caller must be able to bound its clean-up.
func testReview15CancelEndsRelease(t *testing.T, h FaultHarness) {
	p := prefix(t)
	ctx := context.Background()
	b, _ := h.NewClient(t)
	m := newMutex(t, b, "res", lock.Options{Prefix: p, TTL: 30 * time.Second})
	g, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	review15Reconnect(t, h, b, p)
	cctx, cancel := context.WithCancel(ctx)
	const after, slack = 300 * time.Millisecond, 700 * time.Millisecond
	stop := time.AfterFunc(after, cancel)
	defer stop.Stop()
	start := time.Now()
	st, err := g.Release(cctx)
	el := time.Since(start)
	h.Faults().Restore()
	if err == nil {
		t.Errorf("Release succeeded (%v) with every byte dropped", st)
	}
	if el > after+slack {
		t.Errorf("Release returned %v after its ctx was cancelled (at %v): want within %v (%v, %v)", el-after, after, slack, st, err)
	}
	// Released again (the first call's outcome is unknown; the client may
	// fail a call or two while it reconnects), the lease is gone long
	// before its TTL.
	other := newMutex(t, h.Direct(t), "res", lock.Options{Prefix: p})
	eventually(t, 10*time.Second, "another client gets the lock", func() bool {
		if _, err := g.Release(ctx); err != nil && !errors.Is(err, distkit.ErrNotHeld) {
			return false
		}
		g2, err := other.TryLock(ctx)
		if err == nil {
			release(t, g2)
		}
		return err == nil
	})
}

// testReview15AbandonedSubscription: a subscription whose subscriber gave
// up before the server confirmed it (a wait that ended, slow replies)
// leaves no subscription on the server ("subscribe/unsubscribe of one
// channel strictly ordered: no lost subscription, no leak"): once the
// server answers again, a PUBLISH on the channel reaches nobody.
func testReview15AbandonedSubscription(t *testing.T, h FaultHarness) {
	ctx := context.Background()
	b, _ := h.NewClient(t)
	n, ok := b.(backend.Notifier)
	if !ok {
		t.Skip("backend is not a Notifier")
	}
	ch := tagged(prefix(t), "released")
	h.Faults().ReplyLatency(300 * time.Millisecond)
	sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, unsub, err := n.Subscribe(sctx, ch)
	cancel()
	if err == nil {
		unsub()
		t.Skip("subscribed within 100 ms despite the latency")
	}
	h.Faults().Restore()
	direct := h.Direct(t)
	var receivers int64
	eventually(t, 5*time.Second, "the abandoned subscription is gone from the server", func() bool {
		v, err := direct.EvalScript(ctx, publishScript, nil, ch)
		if err != nil {
			return false
		}
		receivers, _ = v.Int64()
		return receivers == 0
	})
}
