package counter_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/counter"
)

// A key whose pending delta cannot be applied (overflow) is quarantined on
// its own, whatever bytes it holds: the other keys of the same batch still
// reach the backend. A key ending in a space used to be lost when the
// overflow message was trimmed, so the whole batch failed forever.
func TestLaxStuckKeyWithTrailingSpaceIsQuarantined(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l := newLax(t, b, time.Hour)
	defer func() {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		l.Close(cctx)
	}()
	big := "big "
	s := newStrictOn(t, b)
	if _, err := s.Set(ctx, big, math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	l.Inc(ctx, big, 1) // the local view has not seen the remote value
	l.Inc(ctx, "ok", 5)
	if err := l.Flush(ctx); !errors.Is(err, distkit.ErrOverflow) {
		t.Fatalf("Flush: %v, want ErrOverflow for %q", err, big)
	}
	if got := remote(t, b, "ok"); got != "[5]" {
		t.Fatalf("remote ok = %s after the flush, want [5]: one stuck key held back the batch", got)
	}
	if p := l.Pending(); len(p) != 1 || p[big] != 1 {
		t.Fatalf("Pending = %v, want only %q: 1", p, big)
	}
}

// Close returns within its context even when a background flush is stuck
// on a backend that does not answer.
func TestLaxCloseBoundedWhileFlushHangs(t *testing.T) {
	b := memory.New(memory.Options{})
	l := newLax(t, b, time.Millisecond)
	l.Inc(context.Background(), "k", 1)
	b.Latency(time.Hour)
	time.Sleep(20 * time.Millisecond) // the flusher is now waiting on the backend
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := l.Close(ctx)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v with a 100ms context", d)
	}
	if err == nil {
		t.Fatal("Close reported success with an unflushed delta")
	}
	b.Latency(0)
	if err := l.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func newStrictOn(t *testing.T, b *memory.Backend) *counter.Strict {
	t.Helper()
	s, err := counter.NewStrict(b.Connect(), counter.Options{Prefix: "t"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
