package ratelimit_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/obs"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// rejectsKey answers every script call touching a key that contains bad
// with a script error (the server rejecting that key: it is quarantined)
// while on.
type rejectsKey struct {
	backend.Backend
	bad string
	on  atomic.Bool
}

func (r *rejectsKey) hit(keys []string) bool {
	return r.on.Load() && slices.ContainsFunc(keys, func(k string) bool { return strings.Contains(k, r.bad) })
}

func (r *rejectsKey) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	if r.hit(keys) {
		return backend.Value{}, &backend.ScriptError{Script: s.Name(), Msg: "WRONGTYPE injected"}
	}
	return r.Backend.EvalScript(ctx, s, keys, args...)
}

func (r *rejectsKey) EvalScripts(ctx context.Context, calls []backend.Call) []backend.Result {
	res := r.Backend.EvalScripts(ctx, calls)
	for i, c := range calls {
		if r.hit(c.Keys) {
			res[i] = backend.Result{Err: &backend.ScriptError{Script: c.Script.Name(), Msg: "WRONGTYPE injected"}}
		}
	}
	return res
}

// TestReview18_QuarantinedKeyIsNoHealthySync: a key the server rejects is
// quarantined (left out of the sync rounds for at least a second) and its
// decisions stay degraded. A round that syncs only the other keys meanwhile
// did not "succeed for every key": sync_healthy must not be reported, and
// the sync-age gauge ("time since the last sync round that left no key
// failing: how stale a degraded view may be") must keep growing.
func TestReview18_QuarantinedKeyIsNoHealthySync(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	defer mem.Close()
	b := &rejectsKey{Backend: mem, bad: "poisoned"}
	tel := testkit.NewTelemetry(t)
	h := testkit.NewHybridLimiter(t, b, ratelimit.Options{Prefix: "r18", SyncInterval: 5 * time.Millisecond,
		Logger: tel.Logger, Observer: tel, MeterProvider: tel.Provider})
	a := h.Absolute()
	lim := ratelimit.PerMinute(100000)
	prefix := obs.AttrPrefix.String("r18")
	inc := func(key string) ratelimit.Decision {
		t.Helper()
		d, err := a.Inc(ctx, key, lim, 1)
		if err != nil {
			t.Fatalf("Inc %s: %v", key, err)
		}
		return d
	}
	inc("good")
	inc("poisoned")
	if err := h.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	b.on.Store(true)
	inc("poisoned")
	tel.WaitEvent(t, distkit.SyncDegraded, 1, 10*time.Second)
	start := time.Now()
	// Well within the key's first quarantine (1 s): only good is synced.
	for time.Since(start) < 300*time.Millisecond {
		inc("good")
		time.Sleep(5 * time.Millisecond)
	}
	if d := inc("poisoned"); d.Degraded == nil {
		t.Fatal("the rejected key's decision is not degraded")
	}
	if n := tel.Count(distkit.SyncHealthy); n != 0 {
		t.Errorf("sync_healthy reported while a key is quarantined (its decisions degraded); log %v", tel.LogEvents(t))
	}
	if v, _ := tel.Collect(t)[obs.RateLimitSyncAge].Value(prefix); v < 0.25 {
		t.Errorf("sync age %.3fs while a key has been failing for %v", v, time.Since(start))
	}
	// The key is accepted again: after its quarantine, a round syncs it.
	b.on.Store(false)
	testkit.Eventually(t, 10*time.Second, "sync_healthy after the key recovers", func() bool {
		inc("poisoned")
		return tel.Count(distkit.SyncHealthy) == 1
	})
	if d := inc("poisoned"); d.Degraded != nil {
		t.Errorf("decision still degraded after sync_healthy: %v", d.Degraded)
	}
}
