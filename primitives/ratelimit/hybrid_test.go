package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// perMinute600 is what 10/s over the old default window of 60 s was.
var perMinute600 = ratelimit.PerMinute(600)

func newHybrid(t *testing.T, b backend.Backend, opts ratelimit.Options) *ratelimit.Hybrid {
	t.Helper()
	h, err := ratelimit.NewHybrid(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		h.Close(ctx)
	})
	return h
}

// A failed sync degrades the keys it carried until the next sync
// succeeds, and only those: the failure is per sync, not sticky.
func TestHybridTransientFailureIsPerSync(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	h := newHybrid(t, b, ratelimit.Options{SyncInterval: time.Hour})
	for _, k := range []string{"a", "b"} {
		if d, err := h.Absolute().Inc(ctx, k, perMinute600, 1); err != nil || d.Degraded != nil {
			t.Fatalf("key %s: %+v, %v", k, d, err)
		}
	}
	if err := h.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	h.Absolute().Inc(ctx, "a", perMinute600, 1) // only a is in the next sync
	b.FailNext(1, nil)
	if err := h.Sync(ctx); !errors.Is(err, distkit.ErrNotApplied) {
		t.Fatalf("failed sync: %v", err)
	}
	d, err := h.Absolute().Inc(ctx, "a", perMinute600, 1)
	if err != nil || !d.Allowed || !errors.Is(d.Degraded, distkit.ErrNotApplied) {
		t.Fatalf("key a after its sync failed: %+v, %v; want a local decision marked degraded", d, err)
	}
	if d, err := h.Absolute().Inc(ctx, "b", perMinute600, 1); err != nil || d.Degraded != nil {
		t.Fatalf("key b was not in the failed sync: %+v, %v", d, err)
	}
	if err := h.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err := h.Absolute().Inc(ctx, "a", perMinute600, 1); err != nil || d.Degraded != nil {
		t.Fatalf("key a after a good sync: %+v, %v", d, err)
	}
	// Nothing was lost: a's 4 and b's 2 reached the server.
	r := testkit.NewRedisLimiter(t, b, ratelimit.Options{})
	if err := h.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]int64{"a": 4, "b": 2} {
		if d, _ := r.Absolute().Inc(ctx, k, perMinute600, 1); d.Remaining != 600-want-1 {
			t.Fatalf("key %s on the server: %+v; want %d counted", k, d, want)
		}
	}
}

// A key the server rejects is quarantined: it is retried with backoff, not
// every sync, and recovers once the server takes it again.
func TestHybridQuarantine(t *testing.T) {
	ctx := context.Background()
	clk := &manualClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := memory.New(memory.Options{Clock: clk})
	cb := &countingBackend{Backend: b}
	h := newHybrid(t, cb, ratelimit.Options{SyncInterval: time.Hour, Clock: clk})
	bad := keyspace.RateLimit("distkit", "bad")
	if _, err := b.EvalScript(ctx, testkit.WrongTypeScript, []string{bad.Counts}); err == nil {
		t.Fatal("WRONGTYPE script succeeded")
	}
	d, err := h.Absolute().Inc(ctx, "bad", perMinute600, 1)
	var se *backend.ScriptError
	if err != nil || !errors.As(d.Degraded, &se) {
		t.Fatalf("bad key: %+v, %v; want degraded by the script error", d, err)
	}
	before := cb.perKey("bad")
	for range 10 {
		h.Absolute().Inc(ctx, "bad", perMinute600, 1)
		h.Sync(ctx)
		clk.Advance(50 * time.Millisecond)
	}
	if n := cb.perKey("bad") - before; n != 0 {
		t.Fatalf("the quarantined key ran %d scripts within its 1 s backoff", n)
	}
	b.EvalScript(ctx, testkit.DelKeyScript, []string{bad.Counts}) // the operator fixes it
	clk.Advance(time.Second)
	if err := h.Sync(ctx); err != nil {
		t.Fatalf("sync after the fix: %v", err)
	}
	if d, err := h.Absolute().Inc(ctx, "bad", perMinute600, 1); err != nil || d.Degraded != nil {
		t.Fatalf("bad key after the fix: %+v, %v", d, err)
	}
}

// A caller whose context is cancelled gets its own error; the limiter and
// the key are unharmed.
func TestCancelledCallerContext(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	r := testkit.NewRedisLimiter(t, b, ratelimit.Options{})
	if _, err := r.Absolute().Inc(cancelled, "k", perMinute600, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Redis with a cancelled context: %v", err)
	}
	if d, err := r.Absolute().Inc(ctx, "k", perMinute600, 1); err != nil || d.Remaining != 599 {
		t.Fatalf("Redis after a cancelled call: %+v, %v; want nothing counted for it", d, err)
	}
	h := newHybrid(t, b, ratelimit.Options{Prefix: "h", SyncInterval: time.Hour})
	b.Latency(50 * time.Millisecond)
	short, cancel2 := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel2()
	if _, err := h.Absolute().Inc(short, "k", perMinute600, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Hybrid first use with a short context: %v", err)
	}
	b.Latency(0)
	if d, err := h.Absolute().Inc(ctx, "k", perMinute600, 1); err != nil || d.Degraded != nil || d.Remaining != 599 {
		t.Fatalf("Hybrid after a caller gave up: %+v, %v", d, err)
	}
}

// Close racing decisions: whatever was admitted before Close is pushed;
// nothing is admitted after it.
func TestHybridCloseRacingDecisions(t *testing.T) {
	ctx := context.Background()
	for round := range 5 {
		b := memory.New(memory.Options{})
		h, _ := ratelimit.NewHybrid(b, ratelimit.Options{SyncInterval: time.Millisecond})
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					d, err := h.Absolute().Inc(ctx, fmt.Sprint("k", (g+i)%3), ratelimit.PerMinute(60_000_000), 1)
					if errors.Is(err, distkit.ErrClosed) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					if d.Allowed {
						admitted.Add(1)
					}
				}
			}()
		}
		time.Sleep(time.Duration(round+1) * 3 * time.Millisecond)
		if err := h.Close(ctx); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		r := testkit.NewRedisLimiter(t, b, ratelimit.Options{})
		counted := int64(0)
		for k := range 3 {
			d, _ := r.Absolute().Inc(ctx, fmt.Sprint("k", k), ratelimit.PerMinute(60_000_000), 1)
			counted += 6e7 - 1 - d.Remaining
		}
		if counted != admitted.Load() {
			t.Fatalf("round %d: admitted %d, the server counted %d", round, admitted.Load(), counted)
		}
	}
}

// A Local decision racing the idle sweep never records into a dropped
// window.
func TestLocalSweepRace(t *testing.T) {
	ctx := context.Background()
	l, err := ratelimit.NewLocal(ratelimit.Options{IdleAfter: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	var at []time.Time
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(300 * time.Millisecond)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				d, _ := l.Absolute().Inc(ctx, "k", ratelimit.PerSecond(20), 1)
				if d.Allowed {
					mu.Lock()
					at = append(at, d.At)
					mu.Unlock()
				}
				time.Sleep(100 * time.Microsecond)
			}
		}()
	}
	wg.Wait()
	if worst := testkit.MaxInWindow(at, time.Second); worst > 20 {
		t.Fatalf("a 1s window admitted %d, capacity 20", worst)
	}
}

type countingBackend struct {
	backend.Backend
	mu   sync.Mutex
	keys map[string]int
}

func (c *countingBackend) count(keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keys == nil {
		c.keys = map[string]int{}
	}
	if len(keys) > 0 {
		c.keys[keys[0]]++
	}
}

func (c *countingBackend) perKey(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keys[keyspace.RateLimit("distkit", key).Counts]
}

func (c *countingBackend) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	c.count(keys)
	return c.Backend.EvalScript(ctx, s, keys, args...)
}

func (c *countingBackend) EvalScripts(ctx context.Context, calls []backend.Call) []backend.Result {
	for _, call := range calls {
		c.count(call.Keys)
	}
	return c.Backend.EvalScripts(ctx, calls)
}
