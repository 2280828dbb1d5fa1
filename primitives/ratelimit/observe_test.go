package ratelimit_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/obs"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// switchable fails every script call (single and batched) while down.
type switchable struct {
	backend.Backend
	down atomic.Bool
}

var errDown = driver.NotApplied(errors.New("injected: backend down"))

func (s *switchable) EvalScript(ctx context.Context, sc backend.Script, keys []string, args ...string) (backend.Value, error) {
	if s.down.Load() {
		return backend.Value{}, errDown
	}
	return s.Backend.EvalScript(ctx, sc, keys, args...)
}

func (s *switchable) EvalScripts(ctx context.Context, calls []backend.Call) []backend.Result {
	if s.down.Load() {
		res := make([]backend.Result, len(calls))
		for i := range res {
			res[i].Err = errDown
		}
		return res
	}
	return s.Backend.EvalScripts(ctx, calls)
}

// TestHybridObservability: a Hybrid whose syncs fail reports
// sync_degraded once and sync_healthy once it recovers; syncs are counted
// by outcome, failed keys counted, decisions counted by result and
// whether degraded.
func TestHybridObservability(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	defer mem.Close()
	b := &switchable{Backend: mem}
	tel := testkit.NewTelemetry(t)
	h := testkit.NewHybridLimiter(t, b, ratelimit.Options{Prefix: "obs", SyncInterval: 5 * time.Millisecond,
		Logger: tel.Logger, Observer: tel, MeterProvider: tel.Provider})
	a := h.Absolute()
	lim := ratelimit.PerMinute(1000)
	prefix := obs.AttrPrefix.String("obs")
	allow := func() ratelimit.Decision {
		t.Helper()
		d, err := a.Inc(ctx, "k", lim, 1)
		if err != nil || !d.Allowed {
			t.Fatalf("Inc: %+v, %v", d, err)
		}
		return d
	}
	allow()
	testkit.Eventually(t, 10*time.Second, "a sync", func() bool {
		return tel.Sum(t, obs.RateLimitSyncs, prefix, obs.AttrOutcome.String("ok")) >= 1
	})

	b.down.Store(true)
	allow() // something to push
	ev := tel.WaitEvent(t, distkit.SyncDegraded, 1, 10*time.Second)
	if ev.Primitive != "ratelimit" || ev.Name != "obs" || !errors.Is(ev.Err, distkit.ErrNotApplied) {
		t.Errorf("event %+v", ev)
	}
	if d := allow(); d.Degraded == nil {
		t.Error("decision not degraded while syncs fail")
	}
	testkit.Eventually(t, 10*time.Second, "3 failed syncs", func() bool {
		allow()
		return tel.Sum(t, obs.RateLimitSyncs, prefix, obs.AttrOutcome.String("failed")) >= 3
	})
	age := func() float64 {
		v, ok := tel.Collect(t)[obs.RateLimitSyncAge].Value(prefix)
		if !ok {
			t.Fatal("no sync age reported")
		}
		return v
	}
	time.Sleep(20 * time.Millisecond)
	if a := age(); a < 0.02 {
		t.Errorf("sync age %vs while every sync fails for more than 20 ms", a)
	}
	b.down.Store(false)
	allow()
	tel.WaitEvent(t, distkit.SyncHealthy, 1, 10*time.Second)
	if a := age(); a > 5 {
		t.Errorf("sync age %vs after the recovery", a)
	}
	if n := tel.Count(distkit.SyncDegraded); n != 1 {
		t.Errorf("%d sync_degraded events, want 1", n)
	}
	if got, want := tel.LogEvents(t), []string{"WARN sync_degraded", "INFO sync_healthy"}; !slices.Equal(got, want) {
		t.Errorf("log lines %v, want %v", got, want)
	}
	ms := tel.Collect(t)
	if v, _ := ms[obs.RateLimitSyncFailures].Value(prefix); v < 3 {
		t.Errorf("sync failures %v, want at least 3", v)
	}
	hybrid := obs.AttrProvider.String("hybrid")
	if v, _ := ms[obs.RateLimitDecisions].Value(prefix, hybrid, obs.AttrResult.String("allowed"), obs.AttrDegraded.Bool(true)); v < 1 {
		t.Errorf("degraded admissions %v, want at least 1", v)
	}
	if v, _ := ms[obs.RateLimitDecisions].Value(prefix, hybrid, obs.AttrResult.String("allowed"), obs.AttrDegraded.Bool(false)); v < 1 {
		t.Errorf("admissions %v, want at least 1", v)
	}
	if u := ms[obs.RateLimitDecisions].Unit; u != "{decision}" {
		t.Errorf("decisions unit %q", u)
	}
	if u := ms[obs.RateLimitSyncAge].Unit; u != "s" {
		t.Errorf("sync age unit %q", u)
	}
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := tel.Collect(t)[obs.RateLimitSyncAge].Value(prefix); ok {
		t.Error("sync age still reported after Close")
	}
}

// TestDecisionMetrics: every provider counts its decisions by strategy
// and result.
func TestDecisionMetrics(t *testing.T) {
	ctx := context.Background()
	tel := testkit.NewTelemetry(t)
	l, err := ratelimit.NewLocal(ratelimit.Options{Prefix: "dm", MeterProvider: tel.Provider})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	mem := memory.New(memory.Options{})
	defer mem.Close()
	r := testkit.NewRedisLimiter(t, mem, ratelimit.Options{Prefix: "dm", MeterProvider: tel.Provider})
	lim := ratelimit.PerMinute(1)
	for _, p := range []interface{ Absolute() *ratelimit.Absolute }{l, r} {
		for range 3 {
			if _, err := p.Absolute().Inc(ctx, "k", lim, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	ms := tel.Collect(t)
	for _, provider := range []string{"local", "redis"} {
		for result, want := range map[string]float64{"allowed": 1, "rejected": 2} {
			v, _ := ms[obs.RateLimitDecisions].Value(obs.AttrProvider.String(provider), obs.AttrStrategy.String("absolute"),
				obs.AttrResult.String(result), obs.AttrDegraded.Bool(false))
			if v != want {
				t.Errorf("%s %s: %v, want %v", provider, result, v, want)
			}
		}
	}
}
