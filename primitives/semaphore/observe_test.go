package semaphore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/obs"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/semaphore"
)

// TestSemaphoreObservability: a failed permit renewal is reported once
// and counted, its recovery reported; a lost permit is reported, counted
// and its hold time recorded with end "lost"; a released one with
// "released".
func TestSemaphoreObservability(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	defer mem.Close()
	tel := testkit.NewTelemetry(t)
	s, err := semaphore.New(mem, "pool", 2, semaphore.Options{Prefix: "obs", TTL: time.Second,
		Logger: tel.Logger, Observer: tel, MeterProvider: tel.Provider})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Acquire(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	mem.FailNext(1, errors.New("injected")) // the next operation is the renewal
	ev := tel.WaitEvent(t, distkit.LeaseRenewFailing, 1, 10*time.Second)
	if ev.Primitive != "semaphore" || ev.Name != "pool" || !errors.Is(ev.Err, distkit.ErrNotApplied) {
		t.Errorf("event %+v", ev)
	}
	tel.WaitEvent(t, distkit.LeaseRenewRecovered, 1, 10*time.Second)
	if _, err := p.Release(ctx); err != nil {
		t.Fatal(err)
	}
	p, err = s.Acquire(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	mem.FlushAll()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("permit not lost")
	}
	tel.WaitEvent(t, distkit.LeaseLost, 1, 10*time.Second)
	p.Release(ctx)
	if got, want := tel.LogEvents(t), []string{"WARN lease_renew_failing", "INFO lease_renew_recovered", "WARN lease_lost"}; !slices.Equal(got, want) {
		t.Errorf("log lines %v, want %v", got, want)
	}
	prefix := obs.AttrPrefix.String("obs")
	ms := tel.Collect(t)
	for _, c := range []struct {
		name, end string
		want      float64
	}{
		{obs.SemHoldDuration, "released", 1}, {obs.SemHoldDuration, "lost", 1},
		{obs.SemLeasesLost, "", 1}, {obs.SemRenewFailures, "", 1},
	} {
		want := []any{prefix}
		if c.end != "" {
			want = append(want, obs.AttrEnd.String(c.end))
		}
		if v, _ := ms[c.name].Value(testkit.KVs(want...)...); v != c.want {
			t.Errorf("%s %s: %v, want %v", c.name, c.end, v, c.want)
		}
	}
	if u := ms[obs.SemHoldDuration].Unit; u != "s" {
		t.Errorf("hold unit %q", u)
	}
}
