package counter_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/obs"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/counter"
)

// TestReview18_LaxRefusedKeyIsAFlushFailure: a key whose delta the backend
// refuses (here ErrOverflow: another process moved the value to the int64
// limit) stays pending and is retried with backoff by the background
// flusher — the README's flush_failing case ("deltas stay pending,
// retried with backoff"). The failure must be visible as a log line, an
// event and a metric; it was reported as a successful flush instead. Once
// the key is overwritten and flushes apply everything again,
// flush_recovered is reported once; a batch of other keys while the
// refused key waits for its retry is no recovery.
func TestReview18_LaxRefusedKeyIsAFlushFailure(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	defer mem.Close()
	tel := testkit.NewTelemetry(t)
	strict, err := counter.NewStrict(mem, counter.Options{Prefix: "r18"})
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close(ctx)
	l := testkit.NewLax(t, mem, counter.Options{Prefix: "r18", AllowedLag: 5 * time.Millisecond,
		Logger: tel.Logger, Observer: tel, MeterProvider: tel.Provider})
	prefix := obs.AttrPrefix.String("r18")

	if _, err := strict.Set(ctx, "x", math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Inc(ctx, "x", 1); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(ctx); err == nil {
		t.Fatal("Flush of an overflowing delta: nil error")
	}
	if _, ok := l.Failed()["x"]; !ok {
		t.Fatalf("Failed() = %v, want x", l.Failed())
	}
	ev := tel.WaitEvent(t, distkit.FlushFailing, 1, 10*time.Second)
	if !errors.Is(ev.Err, distkit.ErrOverflow) {
		t.Errorf("flush_failing error %v, want ErrOverflow", ev.Err)
	}
	if v := tel.Sum(t, obs.CounterFlushFailures, prefix); v < 1 {
		t.Errorf("flush failures %v, want at least 1", v)
	}

	// Other keys flush fine while x waits for its retry: still failing.
	if _, err := l.Inc(ctx, "y", 1); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "y flushed", func() bool { _, ok := l.Pending()["y"]; return !ok })
	if n := tel.Count(distkit.FlushRecovered); n != 0 {
		t.Errorf("flush_recovered reported while x is still refused")
	}

	// x overwritten: nothing refused any more.
	if _, err := l.Set(ctx, "x", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Inc(ctx, "z", 1); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tel.WaitEvent(t, distkit.FlushRecovered, 1, 10*time.Second)
	if got, want := tel.LogEvents(t), []string{"WARN flush_failing", "INFO flush_recovered"}; !slices.Equal(got, want) {
		t.Errorf("log lines %v, want %v", got, want)
	}
}

// TestReview18_PanickingObserverLeavesFlusherRunning: the Observer is
// user code called from the Lax's background flusher. One that panics
// must not take the process down with it (a panic in a goroutine the
// library started cannot be recovered by the user), nor stop the flusher:
// the deltas still reach the backend once it answers again.
func TestReview18_PanickingObserverLeavesFlusherRunning(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	defer mem.Close()
	b := testkit.NewFaulty(mem)
	tel := testkit.NewTelemetry(t)
	calls := make(chan distkit.EventKind, 16)
	l := testkit.NewLax(t, b, counter.Options{Prefix: "r18p", AllowedLag: 5 * time.Millisecond, Logger: tel.Logger,
		Observer: distkit.ObserverFunc(func(e distkit.Event) {
			select {
			case calls <- e.Kind:
			default:
			}
			panic("observer bug")
		})})
	b.FailScript("counter-lax-flush", errors.New("injected"))
	if _, err := l.Inc(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	select {
	case k := <-calls:
		if k != distkit.FlushFailing {
			t.Errorf("first event %v", k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no flush_failing")
	}
	b.FailScript("counter-lax-flush", nil)
	testkit.Eventually(t, 10*time.Second, "a flushed after the panicking observer", func() bool { return len(l.Pending()) == 0 })
	strict, err := counter.NewStrict(mem, counter.Options{Prefix: "r18p"})
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close(ctx)
	if v, err := strict.Get(ctx, "a"); err != nil || v != 1 {
		t.Errorf("a = %d, %v; want 1", v, err)
	}
}

// TestReview18_FlushLagGauge: the issue asks for the Lax counter's flush
// "lag" beside batches, deltas, failures and the pending gauge: how far
// behind the backend is. While flushes fail with deltas pending, the lag
// grows; once they succeed and nothing is pending, it is 0.
func TestReview18_FlushLagGauge(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	defer mem.Close()
	b := testkit.NewFaulty(mem)
	tel := testkit.NewTelemetry(t)
	l := testkit.NewLax(t, b, counter.Options{Prefix: "r18lag", AllowedLag: 5 * time.Millisecond, MeterProvider: tel.Provider})
	prefix := obs.AttrPrefix.String("r18lag")
	const name = "distkit.counter.flush.lag"
	b.FailScript("counter-lax-flush", errors.New("injected"))
	if _, err := l.Inc(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testkit.Eventually(t, 10*time.Second, "flushes failing for 200ms", func() bool {
		return tel.Sum(t, obs.CounterFlushFailures, prefix) >= 1 && time.Since(start) > 200*time.Millisecond
	})
	m, ok := tel.Collect(t)[name]
	if !ok {
		t.Fatalf("no %s metric", name)
	}
	if m.Unit != "s" {
		t.Errorf("%s unit %q, want s", name, m.Unit)
	}
	if v, ok := m.Value(prefix); !ok || v < 0.1 { // failing since the first failed batch, a few ms after start
		t.Errorf("%s = %v (%v) while flushes have failed for %v", name, v, ok, time.Since(start))
	}
	b.FailScript("counter-lax-flush", nil)
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if v, ok := tel.Collect(t)[name].Value(prefix); !ok || v != 0 {
		t.Errorf("%s = %v (%v) with nothing pending, want 0", name, v, ok)
	}
}
