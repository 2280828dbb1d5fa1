package counter_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
)

// Review 21: Close whose context ends while the two calls in flight are
// direct ones (no batch, so no flusher) must still settle the calls queued
// behind them: they were never sent and Close promised they never will be
// (ErrNotApplied). Before, such a call stayed blocked after Close returned,
// for as long as the unrelated calls in flight took (for ever on a hung
// backend with context.Background()).
func TestReview21_CloseSettlesCallsQueuedBehindDirectCalls(t *testing.T) {
	s := newStepper()
	c := newStepStrict(t, s)
	ctx := context.Background()
	a, b, ca, cb := busy(t, s, c) // two direct calls in flight, held
	q := start(func() (int64, error) { return c.Inc(ctx, "k", 1) })
	waitQueued(t, c, 1)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- c.Close(cctx) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after its context ended")
	}
	select {
	case <-q.done:
		if !errors.Is(q.err, distkit.ErrNotApplied) || errors.Is(q.err, distkit.ErrIndeterminate) {
			t.Errorf("call queued when Close gave up: %d, %v; want ErrNotApplied (never sent)", q.v, q.err)
		}
	case <-time.After(2 * time.Second):
		t.Errorf("call queued when Close gave up still blocked 2 s after Close returned")
	}
	ca.run()
	cb.run()
	a.wait(t)
	b.wait(t)
	if _, err := q.wait(t); !errors.Is(err, distkit.ErrNotApplied) {
		t.Errorf("queued call once the calls in flight returned: %v", err)
	}
	s.none(t) // never sent
}

// Review 21: two Close calls made while a call is in flight both return
// once it does. Before, the second replaced the first's wake-up channel,
// so the first waited for its context (for ever with Background).
func TestReview21_ConcurrentClosesBothReturn(t *testing.T) {
	s := newStepper()
	c := newStepStrict(t, s)
	ctx := context.Background()
	a := start(func() (int64, error) { return c.Inc(ctx, "x", 1) })
	ca := s.next(t)
	closed := make(chan error, 2)
	go func() { closed <- c.Close(ctx) }()
	go func() { closed <- c.Close(ctx) }()
	// Both Closes wait for the call in flight; give them time to begin.
	time.Sleep(50 * time.Millisecond)
	ca.run()
	if v, err := a.wait(t); v != 1 || err != nil {
		t.Fatalf("call in flight: %d, %v", v, err)
	}
	for i := range 2 {
		select {
		case err := <-closed:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Close %d of 2 did not return after the call in flight did", i+1)
		}
	}
}
