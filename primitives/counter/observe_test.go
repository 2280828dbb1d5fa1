package counter_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/obs"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/counter"
)

// TestLaxObservability: a Lax whose flushes fail reports flush_failing
// once (log line, event, failure metric, pending gauge), however many
// rounds fail, and flush_recovered once when they succeed again; the
// applied batches and deltas are counted.
func TestLaxObservability(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	defer mem.Close()
	b := testkit.NewFaulty(mem)
	tel := testkit.NewTelemetry(t)
	l := testkit.NewLax(t, b, counter.Options{Prefix: "obs", AllowedLag: 5 * time.Millisecond,
		Logger: tel.Logger, Observer: tel, MeterProvider: tel.Provider})
	prefix := obs.AttrPrefix.String("obs")

	if _, err := l.Inc(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	b.FailScript("counter-lax-flush", errors.New("injected"))
	if _, err := l.Inc(ctx, "b", 2); err != nil {
		t.Fatal(err)
	}
	ev := tel.WaitEvent(t, distkit.FlushFailing, 1, 10*time.Second)
	if ev.Primitive != "counter" || ev.Name != "obs" || !errors.Is(ev.Err, distkit.ErrNotApplied) {
		t.Errorf("event %+v", ev)
	}
	testkit.Eventually(t, 10*time.Second, "3 failed flush batches", func() bool {
		return tel.Sum(t, obs.CounterFlushFailures, prefix, obs.AttrOutcome.String("not_applied")) >= 3
	})
	ms := tel.Collect(t)
	if v, ok := ms[obs.CounterPendingKeys].Value(prefix); !ok || v != 1 {
		t.Errorf("pending keys gauge %v %v, want 1", v, ok)
	}
	for name, unit := range map[string]string{obs.CounterFlushBatches: "{batch}", obs.CounterFlushDeltas: "{delta}",
		obs.CounterFlushFailures: "{batch}", obs.CounterPendingKeys: "{key}"} {
		if ms[name].Unit != unit {
			t.Errorf("%s: unit %q, want %q", name, ms[name].Unit, unit)
		}
	}

	b.FailScript("counter-lax-flush", nil)
	tel.WaitEvent(t, distkit.FlushRecovered, 1, 10*time.Second)
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := tel.Count(distkit.FlushFailing); n != 1 {
		t.Errorf("%d flush_failing events, want 1 (one per state change)", n)
	}
	if got, want := tel.LogEvents(t), []string{"WARN flush_failing", "INFO flush_recovered"}; !slices.Equal(got, want) {
		t.Errorf("log lines %v, want %v", got, want)
	}
	if v := tel.Sum(t, obs.CounterFlushBatches, prefix); v < 2 {
		t.Errorf("batches %v, want at least 2", v)
	}
	if v := tel.Sum(t, obs.CounterFlushDeltas, prefix); v != 2 {
		t.Errorf("deltas %v, want 2 (a, then b)", v)
	}
	if v, _ := tel.Collect(t)[obs.CounterPendingKeys].Value(prefix); v != 0 {
		t.Errorf("pending keys %v after the flush", v)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := tel.Collect(t)[obs.CounterPendingKeys].Value(attribute.String("distkit.prefix", "obs")); ok {
		t.Error("pending keys gauge still reported after Close")
	}
}

// TestLaxNoTelemetry: without Logger, Observer or MeterProvider nothing is
// set up (and nothing breaks).
func TestLaxNoTelemetry(t *testing.T) {
	mem := memory.New(memory.Options{})
	defer mem.Close()
	l := testkit.NewLax(t, mem, counter.Options{Prefix: "quiet"})
	if _, err := l.Inc(context.Background(), "a", 1); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestLaxCollectedLeavesNoGauge: a Lax dropped without Close is still
// collected with a MeterProvider set (the pending-keys gauge holds it
// weakly) and its gauge stops reporting.
func TestLaxCollectedLeavesNoGauge(t *testing.T) {
	mem := memory.New(memory.Options{})
	defer mem.Close()
	tel := testkit.NewTelemetry(t)
	func() {
		l, err := counter.NewLax(mem, counter.Options{Prefix: "gone", MeterProvider: tel.Provider})
		if err != nil {
			t.Fatal(err)
		}
		l.Inc(context.Background(), "a", 1)
	}()
	prefix := obs.AttrPrefix.String("gone")
	testkit.Eventually(t, 10*time.Second, "the gauge of a collected Lax gone", func() bool {
		runtime.GC()
		_, ok := tel.Collect(t)[obs.CounterPendingKeys].Value(prefix)
		return !ok
	})
	if v := tel.Sum(t, obs.CounterFlushDeltas, prefix); v != 1 {
		t.Errorf("deltas %v: the collected Lax's last flush was not counted", v)
	}
}
