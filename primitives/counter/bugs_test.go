package counter_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
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

// A batch whose reply was lost, resent: the keys the backend refused the
// first time come back as not applied (the marker remembers them), are
// tried again and reported; the others are applied exactly once.
func TestLaxResentBatchKeepsRefusals(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l := newLax(t, b, time.Hour)
	defer l.Close(ctx)
	s := newStrictOn(t, b)
	if _, err := s.Set(ctx, "big", math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	l.Inc(ctx, "big", 1)
	l.Inc(ctx, "ok", 1)
	b.FailAfterApply(1)
	if err := l.Flush(ctx); !errors.Is(err, distkit.ErrIndeterminate) {
		t.Fatalf("Flush with a lost reply: %v", err)
	}
	err := l.Flush(ctx)
	var ue *counter.UnflushedError
	if !errors.As(err, &ue) || !errors.Is(ue.Failed["big"], distkit.ErrOverflow) || len(ue.Failed) != 1 || ue.Err != nil {
		t.Fatalf("Flush after the resend: %v; want big refused (ErrOverflow) and nothing else", err)
	}
	if got := remote(t, b, "big", "ok"); got != fmt.Sprint([]int64{math.MaxInt64, 1}) {
		t.Fatalf("remote = %s", got)
	}
	if p := l.Pending(); fmt.Sprint(p) != "map[big:1]" {
		t.Fatalf("Pending = %v", p)
	}
}

// Operations that read a key's value fail, naming the key, while this
// process holds a delta of it that the backend refused; Set, Del and
// Clear overwrite the key and drop that delta.
func TestLaxRefusedKeyBlocksReadsUntilOverwritten(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l := newLax(t, b, time.Hour)
	defer l.Close(ctx)
	s := newStrictOn(t, b)
	s.Set(ctx, "big", math.MaxInt64)
	l.Inc(ctx, "big", 1)
	l.Flush(ctx)
	if err := l.Failed()["big"]; !errors.Is(err, distkit.ErrOverflow) {
		t.Fatalf("Failed = %v", l.Failed())
	}
	if _, _, err := l.IncIf(ctx, "big", distkit.Always(), -1); !errors.Is(err, distkit.ErrOverflow) || !strings.Contains(err.Error(), `"big"`) {
		t.Fatalf("IncIf on the refused key: %v", err)
	}
	if _, err := l.GetAll(ctx, "other", "big"); !errors.Is(err, distkit.ErrOverflow) {
		t.Fatalf("GetAll with the refused key: %v", err)
	}
	if _, err := l.GetAll(ctx, "other"); err != nil {
		t.Fatalf("GetAll without it: %v", err)
	}
	if n, err := l.Del(ctx, "big"); err != nil || n != math.MaxInt64 {
		t.Fatalf("Del = %d, %v", n, err)
	}
	if len(l.Failed()) != 0 || len(l.Pending()) != 0 {
		t.Fatalf("after Del: Failed %v, Pending %v", l.Failed(), l.Pending())
	}
	if n, err := l.Inc(ctx, "big", 1); err != nil || n != 1 {
		t.Fatalf("Inc after Del = %d, %v", n, err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := remote(t, b, "big"); got != "[1]" {
		t.Fatalf("remote = %s", got)
	}
}
