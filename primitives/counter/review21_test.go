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
