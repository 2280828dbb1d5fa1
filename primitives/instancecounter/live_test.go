package instancecounter_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/obs"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// TestLiveInstancesGauge: the live-instances gauge of an instance counter
// with a MeterProvider follows the instances of its prefix as its
// heartbeats see them: 1 (itself), 2 when a second instance joins, 1 again
// when that one dies (its heartbeats stop: it expires after its DeadAfter)
// — and no data point once the instance closed.
func TestLiveInstancesGauge(t *testing.T) {
	mem := memory.New(memory.Options{})
	defer mem.Close()
	other := mem.Connect() // the second instance's own client of the same server
	defer other.Close()
	b2 := testkit.NewFaulty(other)
	tel := testkit.NewTelemetry(t)
	c1, err := instancecounter.NewStrict(mem, instancecounter.Options{Prefix: "live", InstanceID: "i1",
		DeadAfter: 1500 * time.Millisecond, MeterProvider: tel.Provider})
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close(context.Background())
	prefix := obs.AttrPrefix.String("live")
	live := func() float64 {
		v, ok := tel.Collect(t)[obs.ICLiveInstances].Value(prefix)
		if !ok {
			return -1
		}
		return v
	}
	testkit.Eventually(t, 10*time.Second, "live instances 1", func() bool { return live() == 1 })
	if u := tel.Collect(t)[obs.ICLiveInstances].Unit; u != "{instance}" {
		t.Errorf("unit %q, want {instance}", u)
	}

	c2 := testkit.NewInstanceCounter(t, b2, instancecounter.Options{Prefix: "live", InstanceID: "i2", DeadAfter: 300 * time.Millisecond})
	testkit.Eventually(t, 10*time.Second, "live instances 2 after i2 joined", func() bool { return live() == 2 })

	b2.FailScript("", errors.New("injected: i2 is cut off")) // i2 stops heartbeating: it dies
	testkit.Eventually(t, 10*time.Second, "live instances 1 after i2 died", func() bool { return live() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c2.Close(ctx) // its Remove fails (cut off): nothing to check

	if err := c1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if v := live(); v != -1 {
		t.Errorf("live instances %v after Close, want no data point", v)
	}
}

// heartbeatArgs records the arguments of every instance-counter
// heartbeat script call.
type heartbeatArgs struct {
	backend.Backend
	mu   sync.Mutex
	seen [][]string
}

func (h *heartbeatArgs) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	if s.Name() == "instancecounter-heartbeat" {
		h.mu.Lock()
		h.seen = append(h.seen, slices.Clone(args))
		h.mu.Unlock()
	}
	return h.Backend.EvalScript(ctx, s, keys, args...)
}

func (h *heartbeatArgs) last() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.seen) == 0 {
		return nil
	}
	return h.seen[len(h.seen)-1]
}

// TestLiveInstancesAskedOnlyWithMeterProvider: the heartbeat asks the
// server for the live-instances count (a read per registered instance)
// only when a MeterProvider is set; with a Logger alone, or nothing, it
// sends what it sent before the count existed.
func TestLiveInstancesAskedOnlyWithMeterProvider(t *testing.T) {
	tel := testkit.NewTelemetry(t)
	for _, tc := range []struct {
		name string
		opts instancecounter.Options
		want int
	}{
		{"none", instancecounter.Options{}, 3},
		{"logger", instancecounter.Options{Logger: tel.Logger, Observer: tel}, 3},
		{"meter", instancecounter.Options{MeterProvider: tel.Provider}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.New(memory.Options{})
			defer mem.Close()
			rec := &heartbeatArgs{Backend: mem}
			tc.opts.Prefix, tc.opts.InstanceID = "ask", "i1"
			testkit.NewInstanceCounter(t, rec, tc.opts)
			testkit.Eventually(t, 10*time.Second, "a heartbeat", func() bool { return rec.last() != nil })
			args := rec.last()
			if len(args) != tc.want || tc.want == 4 && args[3] != "live" {
				t.Errorf("heartbeat args %q, want %d of them (the 4th \"live\")", args, tc.want)
			}
		})
	}
}
