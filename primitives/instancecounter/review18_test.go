package instancecounter_test

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
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// TestReview18_LaxRefusedKeyIsAFlushFailure: a key whose delta the server
// refuses (its cumulative value would overflow) is set aside and retried
// with backoff by the background flusher: a flush failure that must show
// as a log line, an event and a metric (it was reported as a healthy
// flush). Other keys flushing meanwhile are no recovery; once the cause
// goes away and the key flushes, flush_recovered is reported once.
func TestReview18_LaxRefusedKeyIsAFlushFailure(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()
	tel := testkit.NewTelemetry(t)
	other := newStrict(t, b.Connect(), "other")
	if _, _, err := other.Set(ctx, "big", math.MaxInt64-5); err != nil {
		t.Fatal(err)
	}
	l := newLax(t, b.Connect(), instancecounter.Options{InstanceID: "lax", FlushInterval: 5 * time.Millisecond,
		Logger: tel.Logger, Observer: tel, MeterProvider: tel.Provider})
	prefix := obs.AttrPrefix.String("t")
	if _, _, err := l.Get(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	l.Inc(ctx, "big", 10)
	if err := l.Flush(ctx); !errors.Is(err, distkit.ErrOverflow) {
		t.Fatalf("Flush: %v; want an error matching ErrOverflow", err)
	}
	ev := tel.WaitEvent(t, distkit.FlushFailing, 1, 10*time.Second)
	if !errors.Is(ev.Err, distkit.ErrOverflow) || ev.Primitive != "instancecounter" {
		t.Errorf("flush_failing %+v, want ErrOverflow", ev)
	}
	if v := tel.Sum(t, obs.ICFlushFailures, prefix); v < 1 {
		t.Errorf("flush failures %v, want at least 1", v)
	}
	// Other keys flush while big is set aside: still failing.
	l.Inc(ctx, "a", 1)
	testkit.Eventually(t, 10*time.Second, "a flushed", func() bool { _, ok := l.Pending()["a"]; return !ok })
	if n := tel.Count(distkit.FlushRecovered); n != 0 {
		t.Errorf("flush_recovered while big is still refused")
	}
	if _, _, err := other.Dec(ctx, "big", 100); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatalf("Flush after the cause went away: %v", err)
	}
	tel.WaitEvent(t, distkit.FlushRecovered, 1, 10*time.Second)
	if got, want := tel.LogEvents(t), []string{"WARN flush_failing", "INFO flush_recovered"}; !slices.Equal(got, want) {
		t.Errorf("log lines %v, want %v", got, want)
	}
}
