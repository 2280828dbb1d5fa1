package counter_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/counter"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newLax(t *testing.T, b *memory.Backend, lag time.Duration) *counter.Lax {
	t.Helper()
	l, err := counter.NewLax(b, counter.Options{Prefix: "t", AllowedLag: lag})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func remote(t *testing.T, b *memory.Backend, keys ...string) string {
	t.Helper()
	s, _ := counter.NewStrict(b.Connect(), counter.Options{Prefix: "t"})
	vals, err := s.GetAll(context.Background(), keys...)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(vals)
}

func TestLaxIndeterminateFlushAppliedOnce(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l := newLax(t, b, time.Hour)
	l.Inc(ctx, "k", 7)
	b.FailAfterApply(1) // applied, but the reply is lost
	if err := l.Flush(ctx); !errors.Is(err, distkit.ErrIndeterminate) {
		t.Fatalf("first flush: %v, want ErrIndeterminate", err)
	}
	if got := remote(t, b, "k"); got != "[7]" {
		t.Fatalf("remote after the lost reply: %s", got)
	}
	l.Inc(ctx, "k", 1) // new deltas while the batch is unresolved
	if p := l.Pending(); p["k"] != 8 {
		t.Fatalf("Pending = %v; the unresolved batch must still count as pending", p)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := remote(t, b, "k"); got != "[8]" {
		t.Fatalf("remote after resend: %s, want [8] (the resent batch must not apply twice)", got)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLaxIndeterminateNotAppliedIsResent(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l := newLax(t, b, time.Hour)
	l.Inc(ctx, "k", 3)
	b.FailNext(1, errIndet) // not applied, but reported as maybe
	l.Flush(ctx)
	b.FailNext(2, nil) // the resends fail outright: still unknown
	l.Flush(ctx)
	l.Flush(ctx)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := remote(t, b, "k"); got != "[3]" {
		t.Fatalf("remote: %s, want [3]", got)
	}
}

var errIndet = fmt.Errorf("lost reply: %w", distkit.ErrIndeterminate)

func TestLaxFailedFlushesDropNothing(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l := newLax(t, b, time.Millisecond) // the background flusher is busy too
	b.FailNext(1<<30, nil)
	var want int64
	for i := range 100 {
		l.Inc(ctx, "k", int64(i))
		want += int64(i)
	}
	l.Dec(ctx, "j", 4)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err := l.Close(cctx)
	cancel()
	var ue *counter.UnflushedError
	if !errors.As(err, &ue) || ue.Pending["k"] != want || ue.Pending["j"] != -4 || len(ue.Pending) != 2 {
		t.Fatalf("Close: %v; want exactly k:%d j:-4 unflushed", err, want)
	}
	if got := remote(t, b, "k", "j"); got != "[0 0]" {
		t.Fatalf("remote while failing: %s", got)
	}
	b.FailNext(0, nil)
	if err := l.Close(ctx); err != nil { // a second Close retries
		t.Fatalf("second Close: %v", err)
	}
	if got := remote(t, b, "k", "j"); got != fmt.Sprint([]int64{want, -4}) {
		t.Fatalf("remote after recovery: %s", got)
	}
}

func TestLaxFlushOverflowKeepsDelta(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l := newLax(t, b, time.Hour)
	other, _ := counter.NewStrict(b, counter.Options{Prefix: "t"})
	l.Inc(ctx, "k", 10)
	l.Inc(ctx, "ok", 1)
	other.Set(ctx, "k", math.MaxInt64-5) // another process fills k up
	err := l.Flush(ctx)
	if !errors.Is(err, distkit.ErrOverflow) {
		t.Fatalf("Flush: %v, want ErrOverflow", err)
	}
	if got := remote(t, b, "k", "ok"); got != fmt.Sprint([]int64{math.MaxInt64 - 5, 1}) {
		t.Fatalf("remote: %s; the other key must flush, k must not change", got)
	}
	if p := l.Pending(); fmt.Sprint(p) != "map[k:10]" {
		t.Fatalf("Pending: %v", p)
	}
	var ue *counter.UnflushedError
	if err := l.Close(ctx); !errors.As(err, &ue) || !errors.Is(err, distkit.ErrOverflow) || ue.Pending["k"] != 10 {
		t.Fatalf("Close: %v", err)
	}
}

func TestLaxSetSupersedesStuckDelta(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l := newLax(t, b, time.Hour)
	other, _ := counter.NewStrict(b, counter.Options{Prefix: "t"})
	l.Inc(ctx, "k", 10)
	other.Set(ctx, "k", math.MaxInt64)
	l.Flush(ctx)
	if n, err := l.Set(ctx, "k", 1); err != nil || n != 1 {
		t.Fatalf("Set: %d, %v", n, err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatalf("Close after Set: %v", err)
	}
	if got := remote(t, b, "k"); got != "[1]" {
		t.Fatalf("remote: %s", got)
	}
}

func TestLaxCollectedWithoutCloseFlushes(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	func() {
		l := newLax(t, b, time.Hour) // only the final flush can send this
		l.Inc(ctx, "k", 42)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for remote(t, b, "k") != "[42]" {
		if time.Now().After(deadline) {
			t.Fatal("a collected Lax did not flush its pending delta")
		}
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	// goleak in TestMain proves the flusher goroutine exited.
}

func TestLaxIncRacingClose(t *testing.T) {
	ctx := context.Background()
	for round := range 20 {
		b := memory.New(memory.Options{})
		l := newLax(t, b, time.Millisecond)
		var acked, racing atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					_, err := l.Inc(ctx, "k", 1)
					switch {
					case err == nil:
						acked.Add(1)
						continue
					case errors.Is(err, distkit.ErrIndeterminate) && errors.Is(err, distkit.ErrClosed):
						racing.Add(1)
					case !errors.Is(err, distkit.ErrClosed):
						t.Error(err)
					}
					return
				}
			}()
		}
		time.Sleep(2 * time.Millisecond)
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		var got int64
		fmt.Sscanf(remote(t, b, "k"), "[%d]", &got)
		// Every acknowledged Inc is there; only those told "indeterminate"
		// may or may not be.
		if got < acked.Load() || got > acked.Load()+racing.Load() {
			t.Fatalf("round %d: remote %d, acknowledged %d, indeterminate %d", round, got, acked.Load(), racing.Load())
		}
	}
}

func TestLaxWarmIncDoesNotAllocate(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l := newLax(t, b, time.Hour)
	defer l.Close(ctx)
	l.Inc(ctx, "warm", 1)
	l.Inc(ctx, "warm", 1) // promoted to the read map
	if n := testing.AllocsPerRun(1000, func() { l.Inc(ctx, "warm", 1) }); n != 0 {
		t.Fatalf("warm Inc allocates %v times", n)
	}
}
