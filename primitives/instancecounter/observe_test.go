package instancecounter_test

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
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// TestHeartbeatObservability: failing heartbeats are reported once
// (heartbeat_failing), counted by outcome, and recovery once; an instance
// whose registration was lost reports instance_dead and instance_rejoined
// and counts the rejoin.
func TestHeartbeatObservability(t *testing.T) {
	mem := memory.New(memory.Options{})
	defer mem.Close()
	b := testkit.NewFaulty(mem)
	tel := testkit.NewTelemetry(t)
	// DeadAfter leaves room for two failed heartbeats (one every DeadAfter/3)
	// before the registration would expire.
	c := testkit.NewInstanceCounter(t, b, instancecounter.Options{Prefix: "obs", InstanceID: "i1", DeadAfter: 2 * time.Second,
		Logger: tel.Logger, Observer: tel, MeterProvider: tel.Provider})
	prefix := obs.AttrPrefix.String("obs")
	testkit.Eventually(t, 10*time.Second, "a heartbeat", func() bool {
		return tel.Sum(t, obs.ICHeartbeats, prefix, obs.AttrOutcome.String("ok")) >= 1
	})

	b.FailScript("instancecounter-heartbeat", errors.New("injected"))
	ev := tel.WaitEvent(t, distkit.HeartbeatFailing, 1, 10*time.Second)
	if ev.Primitive != "instancecounter" || ev.Name != "obs" || ev.Instance != "i1" || !errors.Is(ev.Err, distkit.ErrNotApplied) {
		t.Errorf("event %+v", ev)
	}
	testkit.Eventually(t, 10*time.Second, "2 failed heartbeats", func() bool {
		return tel.Sum(t, obs.ICHeartbeats, prefix, obs.AttrOutcome.String("not_applied")) >= 2
	})
	b.FailScript("instancecounter-heartbeat", nil)
	tel.WaitEvent(t, distkit.HeartbeatRecovered, 1, 10*time.Second)
	if n := tel.Count(distkit.HeartbeatFailing); n != 1 {
		t.Errorf("%d heartbeat_failing events, want 1", n)
	}

	// The data is lost (as after a Redis restart without persistence): the
	// next heartbeat finds the instance unregistered and rejoins.
	if _, _, err := c.Inc(context.Background(), "k", 5); err != nil {
		t.Fatal(err)
	}
	mem.FlushAll()
	tel.WaitEvent(t, distkit.InstanceRejoined, 1, 10*time.Second)
	if n := tel.Count(distkit.InstanceDead); n != 1 {
		t.Errorf("%d instance_dead events, want 1", n)
	}
	if v := tel.Sum(t, obs.ICRejoins, prefix); v != 1 {
		t.Errorf("rejoins %v, want 1", v)
	}
	if cum, _, err := c.Get(context.Background(), "k"); err != nil || cum != 5 {
		t.Errorf("after the rejoin: %d, %v; want 5", cum, err)
	}
	want := []string{"WARN heartbeat_failing", "INFO heartbeat_recovered", "WARN instance_dead", "INFO instance_rejoined"}
	if got := tel.LogEvents(t); !slices.Equal(got, want) {
		t.Errorf("log lines %v, want %v", got, want)
	}
	ms := tel.Collect(t)
	if u := ms[obs.ICHeartbeats].Unit; u != "{heartbeat}" {
		t.Errorf("heartbeats unit %q", u)
	}
}

// TestLaxFlushObservability: a Lax instance counter whose flushes fail
// reports flush_failing once, counts the failed batches and the pending
// keys, then flush_recovered and the applied batches and deltas.
func TestLaxFlushObservability(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	defer mem.Close()
	b := testkit.NewFaulty(mem)
	tel := testkit.NewTelemetry(t)
	l, err := instancecounter.NewLax(b, instancecounter.Options{Prefix: "obs", InstanceID: "i1", FlushInterval: 5 * time.Millisecond,
		Logger: tel.Logger, Observer: tel, MeterProvider: tel.Provider})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	prefix := obs.AttrPrefix.String("obs")

	b.FailScript("instancecounter-flush", errors.New("injected"))
	if _, _, err := l.Inc(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	ev := tel.WaitEvent(t, distkit.FlushFailing, 1, 10*time.Second)
	if ev.Primitive != "instancecounter" || ev.Instance != "i1" || !errors.Is(ev.Err, distkit.ErrNotApplied) {
		t.Errorf("event %+v", ev)
	}
	testkit.Eventually(t, 10*time.Second, "3 failed flushes", func() bool {
		return tel.Sum(t, obs.ICFlushFailures, prefix, obs.AttrOutcome.String("not_applied")) >= 3
	})
	if v, ok := tel.Collect(t)[obs.ICPendingKeys].Value(prefix); !ok || v != 1 {
		t.Errorf("pending keys %v %v, want 1", v, ok)
	}
	b.FailScript("instancecounter-flush", nil)
	tel.WaitEvent(t, distkit.FlushRecovered, 1, 10*time.Second)
	if n := tel.Count(distkit.FlushFailing); n != 1 {
		t.Errorf("%d flush_failing events, want 1", n)
	}
	if v := tel.Sum(t, obs.ICFlushDeltas, prefix); v != 1 {
		t.Errorf("deltas %v, want 1", v)
	}
	if v := tel.Sum(t, obs.ICFlushBatches, prefix); v != 1 {
		t.Errorf("batches %v, want 1", v)
	}
	if v, _ := tel.Collect(t)[obs.ICPendingKeys].Value(prefix); v != 0 {
		t.Errorf("pending keys %v after the flush", v)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
