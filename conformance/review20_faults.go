package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/primitives/election"
	"github.com/distkit-go/distkit/primitives/semaphore"
)

// Review 20: the semaphore's and the election's calls honour their ctx
// while the client reconnects to a server that does not answer (rueidis
// does not honour a cancellation while it dials), as the lock's do since
// review 15.

const review20After, review20Slack = 300 * time.Millisecond, 700 * time.Millisecond

// review20Bounded runs call with a ctx cancelled after review20After (or,
// with deadline, expiring then) and checks it returns within
// review20Slack of that, with an error matching want.
func review20Bounded(t *testing.T, what string, deadline bool, want error, call func(ctx context.Context) error) {
	t.Helper()
	var cctx context.Context
	var cancel context.CancelFunc
	if deadline {
		cctx, cancel = context.WithTimeout(context.Background(), review20After)
	} else {
		cctx, cancel = context.WithCancel(context.Background())
		stop := time.AfterFunc(review20After, cancel)
		defer stop.Stop()
	}
	defer cancel()
	start := time.Now()
	err := call(cctx)
	el := time.Since(start)
	if want != nil && !errors.Is(err, want) {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
	if want == nil && err == nil {
		t.Errorf("%s succeeded with every byte dropped", what)
	}
	if el > review20After+review20Slack {
		t.Errorf("%s returned %v after its ctx ended (at %v): want within %v (%v)", what, el-review20After, review20After, review20Slack, err)
	}
}

// testReview20AcquireDuringReconnect: Acquire (cancellable ctx, no
// deadline), Acquire (ctx deadline) and TryAcquireWithTimeout end within
// a round trip of their budget while the client redials.
func testReview20AcquireDuringReconnect(t *testing.T, h FaultHarness) {
	calls := []struct {
		name     string
		deadline bool
		want     error
		run      func(s *semaphore.Semaphore, ctx context.Context) error
	}{
		{"Acquire(cancelled ctx)", false, context.Canceled, func(s *semaphore.Semaphore, ctx context.Context) error {
			_, err := s.Acquire(ctx, 1)
			return err
		}},
		{"Acquire(ctx deadline)", true, context.DeadlineExceeded, func(s *semaphore.Semaphore, ctx context.Context) error {
			_, err := s.Acquire(ctx, 1)
			return err
		}},
		{"TryAcquireWithTimeout", false, distkit.ErrTimeout, func(s *semaphore.Semaphore, ctx context.Context) error {
			_, err := s.TryAcquireWithTimeout(context.Background(), 1, review20After)
			return err
		}},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			p := prefix(t)
			ctx := context.Background()
			held, err := newSem(t, h.Direct(t), "res", 1, semaphore.Options{Prefix: p, TTL: 30 * time.Second}).Acquire(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer releasePermit(t, held)
			b, _ := h.NewClient(t)
			s := newSem(t, b, "res", 1, semaphore.Options{Prefix: p, TTL: 30 * time.Second})
			if _, err := s.TryAcquire(ctx, 1); !errors.Is(err, distkit.ErrNotAcquired) {
				t.Fatalf("warm-up: %v", err)
			}
			review15Reconnect(t, h, b, p)
			defer h.Faults().Restore()
			review20Bounded(t, c.name, c.deadline, c.want, func(ctx context.Context) error { return c.run(s, ctx) })
		})
	}
}

// testReview20ReleaseDuringReconnect: Permit.Release(ctx) returns soon
// after ctx is cancelled while the client redials; released again once the
// server answers, the units are free long before the TTL.
func testReview20ReleaseDuringReconnect(t *testing.T, h FaultHarness) {
	p := prefix(t)
	ctx := context.Background()
	b, _ := h.NewClient(t)
	s := newSem(t, b, "res", 1, semaphore.Options{Prefix: p, TTL: 30 * time.Second})
	pm, err := s.Acquire(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	review15Reconnect(t, h, b, p)
	review20Bounded(t, "Permit.Release", false, nil, func(ctx context.Context) error {
		_, err := pm.Release(ctx)
		return err
	})
	h.Faults().Restore()
	eventually(t, 10*time.Second, "Release succeeds once the server answers", func() bool {
		st, err := pm.Release(ctx)
		return st == semaphore.Released && err == nil
	})
	other := newSem(t, h.Direct(t), "res", 1, semaphore.Options{Prefix: p})
	eventually(t, 10*time.Second, "another client gets the unit", func() bool {
		p2, err := other.TryAcquire(ctx, 1)
		if err == nil {
			releasePermit(t, p2)
		}
		return err == nil
	})
}

// testReview20CampaignDuringReconnect: Campaign with a cancellable ctx and
// with a ctx deadline ends within a round trip of its ctx's end while the
// client redials.
func testReview20CampaignDuringReconnect(t *testing.T, h FaultHarness) {
	for _, deadline := range []bool{false, true} {
		name, want := "cancelled ctx", error(context.Canceled)
		if deadline {
			name, want = "ctx deadline", context.DeadlineExceeded
		}
		t.Run(name, func(t *testing.T) {
			p := prefix(t)
			ctx := context.Background()
			lead, err := newElection(t, h.Direct(t), "sched", election.Options{Prefix: p, TTL: 30 * time.Second}).Campaign(ctx, "leader")
			if err != nil {
				t.Fatal(err)
			}
			defer lead.Resign(ctx)
			b, _ := h.NewClient(t)
			e := newElection(t, b, "sched", election.Options{Prefix: p, TTL: 30 * time.Second})
			if _, err := e.Leader(ctx); err != nil {
				t.Fatalf("warm-up: %v", err)
			}
			review15Reconnect(t, h, b, p)
			defer h.Faults().Restore()
			review20Bounded(t, "Campaign", deadline, want, func(ctx context.Context) error {
				_, err := e.Campaign(ctx, "candidate")
				return err
			})
		})
	}
}

// testReview20ResignDuringReconnect: Leadership.Resign(ctx) returns soon
// after ctx is cancelled while the client redials; resigned again once the
// server answers, another candidate is elected long before the TTL.
func testReview20ResignDuringReconnect(t *testing.T, h FaultHarness) {
	p := prefix(t)
	ctx := context.Background()
	b, _ := h.NewClient(t)
	e := newElection(t, b, "sched", election.Options{Prefix: p, TTL: 30 * time.Second})
	lead, err := e.Campaign(ctx, "leader")
	if err != nil {
		t.Fatal(err)
	}
	review15Reconnect(t, h, b, p)
	review20Bounded(t, "Leadership.Resign", false, nil, func(ctx context.Context) error { return lead.Resign(ctx) })
	h.Faults().Restore()
	eventually(t, 10*time.Second, "Resign succeeds once the server answers", func() bool { return lead.Resign(ctx) == nil })
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	next, err := newElection(t, h.Direct(t), "sched", election.Options{Prefix: p}).Campaign(cctx, "next")
	if err != nil {
		t.Fatalf("another candidate is not elected: %v", err)
	}
	next.Resign(ctx)
}

// testReview20ObserveEndsDuringReconnect: Observe's channel is closed soon
// after its ctx ends, even while the client redials ("the channel is
// closed, and the goroutine behind it ends, when ctx is done").
func testReview20ObserveEndsDuringReconnect(t *testing.T, h FaultHarness) {
	p := prefix(t)
	ctx := context.Background()
	lead, err := newElection(t, h.Direct(t), "sched", election.Options{Prefix: p, TTL: 30 * time.Second}).Campaign(ctx, "leader")
	if err != nil {
		t.Fatal(err)
	}
	defer lead.Resign(ctx)
	b, _ := h.NewClient(t)
	// The observer polls every second, so that the probe of
	// review15Reconnect, not a poll, meets the reset; its next poll then
	// dials into the blackhole.
	e := newElection(t, b, "sched", election.Options{Prefix: p, TTL: 30 * time.Second, RetryInterval: time.Second})
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := e.Observe(octx)
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Observe reported nothing")
	}
	// Its subscription's confirmation triggers one more read at once; let
	// that pass (the next poll is a second away).
	time.Sleep(300 * time.Millisecond)
	review15Reconnect(t, h, b, p)
	defer h.Faults().Restore()
	time.Sleep(1500 * time.Millisecond) // the observer's next poll is now stuck in the dial
	start := time.Now()
	cancel()
	for range ch {
	}
	if el := time.Since(start); el > review20Slack {
		t.Errorf("Observe's channel closed %v after its ctx was cancelled: want within %v", el, review20Slack)
	}
}
