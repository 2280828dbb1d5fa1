package ratelimit_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/ratelimitscript"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// setter is the SetIf and Reset of one provider.
type setter struct {
	name  string
	abs   *ratelimit.Absolute
	setIf func(context.Context, string, ratelimit.Limit, distkit.Comparator, int64, ratelimit.History) (int64, int64, error)
}

func (w *world) setters() []setter {
	return []setter{
		{"Local", w.local.Absolute(), w.local.SetIf},
		{"Redis", w.redis.Absolute(), w.redis.SetIf},
		{"Hybrid", w.hybrid.Absolute(), w.hybrid.SetIf},
	}
}

// A comparator with an unknown operator is bad input: an error wrapping
// ErrInvalidOption on every provider, as for any other bad argument of
// SetIf. Local silently did nothing ((prev, prev), nil: "did not match"),
// Redis and Hybrid returned the script's DKARG reply, which wraps neither
// ErrInvalidOption nor says what was wrong.
func TestReview17_SetIfUnknownComparator(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, ratelimit.Options{})
	lim := ratelimit.PerSecond(5)
	for _, p := range w.setters() {
		if d, err := p.abs.Inc(ctx, "k", lim, 2); err != nil || !d.Allowed {
			t.Fatalf("%s: %+v, %v", p.name, d, err)
		}
		cur, prev, err := p.setIf(ctx, "k", lim, distkit.Comparator{Op: 42, Operand: 2}, 0, ratelimit.KeepHistory)
		if !errors.Is(err, distkit.ErrInvalidOption) {
			t.Errorf("%s: SetIf with comparator op 42: (%d, %d, %v); want an error wrapping ErrInvalidOption", p.name, cur, prev, err)
		}
	}
}

// Wait with a context that has already ended returns its error and admits
// nothing, as x/time/rate's Wait does (and as Wait on Redis did): on Local,
// and on a Hybrid whose view of the key is fresh, it admitted (and
// counted) the request and returned a nil error. The same check guards the
// moment a wait's timer fires together with the cancellation.
func TestReview17_WaitCancelledConsumesNothing(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, ratelimit.Options{})
	lim := ratelimit.PerSecond(5)
	done, cancel := context.WithCancel(ctx)
	cancel()
	for _, p := range w.providers(t) {
		if d, err := p.abs.Inc(ctx, "k", lim, 1); err != nil || !d.Allowed { // Hybrid: its view is now fresh
			t.Fatalf("%s: %+v, %v", p.name, d, err)
		}
		d, err := p.abs.Wait(done, "k", lim, 1)
		if !errors.Is(err, context.Canceled) || d.Allowed {
			t.Errorf("%s: Wait with a cancelled context: %+v, %v; want context.Canceled and nothing admitted", p.name, d, err)
		}
		p.before()
		if st, err := p.abs.Peek(ctx, "k", lim); err != nil || st.Count != 1 {
			t.Errorf("%s: after a cancelled Wait the window counts %d (%v); want 1", p.name, st.Count, err)
		}
	}
}

// Decisions on a key never wait for the backend beyond their own context:
// also while a Reset or SetIf of the same key is stuck on a hung backend
// (Hybrid held the key's lock across the administrative call, so every
// Inc, Wait and Peek of the key blocked until that call ended, however
// short their own context).
func TestReview17_HybridDecisionNotBlockedByHungAdmin(t *testing.T) {
	ctx := context.Background()
	lim := ratelimit.PerSecond(5)
	for _, admin := range []string{"Reset", "SetIf"} {
		t.Run(admin, func(t *testing.T) {
			hb := testkit.NewHang(memory.New(memory.Options{}))
			h := newHybrid(t, hb, ratelimit.Options{SyncInterval: time.Hour})
			if d, err := h.Absolute().Inc(ctx, "k", lim, 1); err != nil || !d.Allowed { // first use: pulls
				t.Fatalf("%+v, %v", d, err)
			}
			hb.HangOn(func(string) bool { return true })
			adminCtx, stopAdmin := context.WithCancel(ctx)
			adminDone := make(chan error, 1)
			go func() {
				if admin == "Reset" {
					adminDone <- h.Reset(adminCtx, "k")
					return
				}
				_, _, err := h.SetIf(adminCtx, "k", lim, distkit.Always(), 0, ratelimit.KeepHistory)
				adminDone <- err
			}()
			hb.WaitEntered(t, "ratelimit-window")
			defer func() {
				stopAdmin()
				<-adminDone
				hb.HangOn(nil)
			}()
			testkit.ReturnsWithin(t, "Inc while "+admin+" hangs", 100*time.Millisecond, time.Second, func(ctx context.Context) error {
				_, err := h.Absolute().Inc(ctx, "k", lim, 1)
				return err
			}, stopAdmin)
			testkit.ReturnsWithin(t, "Peek while "+admin+" hangs", 100*time.Millisecond, time.Second, func(ctx context.Context) error {
				_, err := h.Absolute().Peek(ctx, "k", lim)
				return err
			}, stopAdmin)
			testkit.ReturnsWithin(t, "Wait while "+admin+" hangs", 100*time.Millisecond, time.Second, func(ctx context.Context) error {
				_, err := h.Absolute().Wait(ctx, "k", lim, 1)
				return err
			}, stopAdmin)
		})
	}
}

// delayReply runs every call at once but, while armed, holds the reply of
// the first one until released: a pull whose answer the network delays
// while other calls go through.
type delayReply struct {
	backend.Backend
	armed    atomic.Bool
	executed chan struct{}
	release  chan struct{}
}

func (d *delayReply) EvalScripts(ctx context.Context, calls []backend.Call) []backend.Result {
	res := d.Backend.EvalScripts(ctx, calls)
	if d.armed.CompareAndSwap(true, false) {
		close(d.executed)
		<-d.release
	}
	return res
}

// After Reset returns, the key's next decision starts from nothing (the
// Reset doc). A first-use pull that read the window before the Reset and
// answered after it must not bring the old count back: Hybrid's Reset did
// not mark the view as renewed (SetIf did), so the late reply was applied
// and the key stayed full until a later sync.
func TestReview17_HybridResetRacingPull(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, ratelimit.Options{})
	lim := ratelimit.PerHour(5)
	r := testkit.NewRedisLimiter(t, w.mem, ratelimit.Options{})
	if d, err := r.Absolute().Inc(ctx, "k", lim, 5); err != nil || !d.Allowed {
		t.Fatalf("filling the window: %+v, %v", d, err)
	}
	db := &delayReply{Backend: w.mem, executed: make(chan struct{}), release: make(chan struct{})}
	db.armed.Store(true)
	h := newHybrid(t, db, ratelimit.Options{SyncInterval: time.Hour, Clock: w.clk})
	first := make(chan ratelimit.Decision, 1)
	go func() {
		d, _ := h.Absolute().Inc(ctx, "k", lim, 1) // first use: its pull reads 5
		first <- d
	}()
	<-db.executed
	if err := h.Reset(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	close(db.release) // the pull's answer (5, from before the Reset) arrives
	<-first
	d, err := h.Absolute().Inc(ctx, "k", lim, 1)
	if err != nil || !d.Allowed {
		t.Fatalf("the first decision after Reset returned: %+v, %v; want admitted (the window was emptied)", d, err)
	}
}

// ParseLimit reads "every D" as 1/D, D a Go duration (case-sensitive: 1M
// is not one, ParseLimit("1/1M") is an error). It lower-cased the
// duration, so that "every 1M" (a month, a megasecond?) silently became
// one per minute and "every 1MS" one per millisecond.
func TestReview17_ParseEveryKeepsDurationCase(t *testing.T) {
	for _, s := range []string{"every 1M", "every 1MS", "every 2H", "1/1M"} {
		if l, err := ratelimit.ParseLimit(s); !errors.Is(err, distkit.ErrInvalidOption) {
			t.Errorf("ParseLimit(%q) = %v, %v; want ErrInvalidOption (not a Go duration)", s, l, err)
		}
	}
	for s, want := range map[string]ratelimit.Limit{"every 1m": ratelimit.Every(time.Minute), "EVERY 250ms": ratelimit.Every(250 * time.Millisecond),
		" Every  2s ": ratelimit.Every(2 * time.Second)} {
		if l, err := ratelimit.ParseLimit(s); err != nil || l != want {
			t.Errorf("ParseLimit(%q) = %v, %v; want %v", s, l, err, want)
		}
	}
}

// What each constructor lets through in the first second and in any window
// (the table in Limit's doc), on every provider, for a client asking every
// millisecond from an arbitrary phase: exactly N at once for the burst
// constructors, at most ⌈1 s / d⌉ for Every(d) (1 when d ≥ 1 s), at most
// N·⌈1 s / Period⌉ in general, and never more than N in any window of the
// period. (Lua agrees with the Go twin measured here: FuzzRateLimit.)
func TestReview17_ConstructorsFirstSecondAndBound(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		lim      ratelimit.Limit
		min, max int // admitted in the first second
	}{
		{ratelimit.PerSecond(7), 7, 7},
		{ratelimit.PerMinute(50), 50, 50},
		{ratelimit.PerHour(20), 20, 20},
		{ratelimit.Every(time.Millisecond), 1, 1000},
		{ratelimit.Every(300 * time.Millisecond), 2, 4}, // 2 with Buckets 1: released up to a bucket late
		{ratelimit.Every(999 * time.Millisecond), 1, 2},
		{ratelimit.Every(1500 * time.Millisecond), 1, 1},
		{ratelimit.Per(5, 333*time.Millisecond), 5, 20},
		{ratelimit.Per(3, 1500*time.Millisecond), 3, 3},
	} {
		for _, buckets := range []int{0, 1, 7} {
			w := newWorld(t, ratelimit.Options{Buckets: buckets})
			w.clk.Advance(37*time.Millisecond + 300*time.Microsecond) // not on a bucket edge
			for _, p := range w.providers(t) {
				var at []time.Time
				first := 0
				start := w.clk.Now()
				for range 2500 {
					p.before()
					d, err := p.abs.Inc(ctx, "k", tc.lim, 1)
					if err != nil {
						t.Fatal(err)
					}
					if d.Allowed {
						at = append(at, w.clk.Now())
						if w.clk.Now().Sub(start) < time.Second {
							first++
						}
					}
					w.clk.Advance(time.Millisecond)
				}
				if first < tc.min || first > tc.max {
					t.Errorf("%v, Buckets %d, %s: %d admitted in the first second, want %d to %d", tc.lim, buckets, p.name, first, tc.min, tc.max)
				}
				if worst := testkit.MaxInWindow(at, tc.lim.Period); worst > int(tc.lim.N) {
					t.Errorf("%v, Buckets %d, %s: %d admitted within one period", tc.lim, buckets, p.name, worst)
				}
			}
		}
	}
}

// modeGate holds the calls of one window-script mode before they reach
// the backend until released, and says when one is held.
type modeGate struct {
	backend.Backend
	mu   sync.Mutex
	hold map[string]chan struct{} // mode → closed to release
	held chan string
}

func (g *modeGate) gate(mode string) {
	g.mu.Lock()
	ch := g.hold[mode]
	g.mu.Unlock()
	if ch != nil {
		g.held <- mode
		<-ch
	}
}

func (g *modeGate) EvalScripts(ctx context.Context, calls []backend.Call) []backend.Result {
	if len(calls) == 1 && len(calls[0].Args) > 0 {
		g.gate(calls[0].Args[0])
	}
	return g.Backend.EvalScripts(ctx, calls)
}

// A decision never decides on a view it could not pull: a first-use pull
// whose reply is dropped because a SetIf of the key began meanwhile (its
// reply may predate the SetIf) must be pulled again, not replaced by "the
// window is empty". The key is full on the server and SetIf keeps it so:
// the decision must be a rejection.
func TestReview17_HybridFirstUseRacingSetIf(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, ratelimit.Options{})
	lim := ratelimit.PerHour(5)
	r := testkit.NewRedisLimiter(t, w.mem, ratelimit.Options{})
	if d, err := r.Absolute().Inc(ctx, "k", lim, 5); err != nil || !d.Allowed {
		t.Fatalf("filling the window: %+v, %v", d, err)
	}
	g := &modeGate{Backend: w.mem, held: make(chan string, 4), hold: map[string]chan struct{}{
		ratelimitscript.ModeSync: make(chan struct{}), ratelimitscript.ModeSet: make(chan struct{})}}
	h := newHybrid(t, g, ratelimit.Options{SyncInterval: time.Hour, Clock: w.clk})
	decided := make(chan ratelimit.Decision, 1)
	go func() {
		d, _ := h.Absolute().Inc(ctx, "k", lim, 1) // first use: pulls
		decided <- d
	}()
	<-g.held // the pull waits
	set := make(chan error, 1)
	go func() {
		_, _, err := h.SetIf(ctx, "k", lim, distkit.Always(), 5, ratelimit.KeepHistory)
		set <- err
	}()
	<-g.held // the SetIf waits
	g.mu.Lock()
	close(g.hold[ratelimitscript.ModeSync]) // the pull goes through (reads 5) while SetIf waits
	delete(g.hold, ratelimitscript.ModeSync)
	g.mu.Unlock()
	var d ratelimit.Decision
	select {
	case d = <-decided:
	case <-time.After(200 * time.Millisecond): // pulling again until SetIf ends is fine too
	}
	g.mu.Lock()
	close(g.hold[ratelimitscript.ModeSet])
	delete(g.hold, ratelimitscript.ModeSet)
	g.mu.Unlock()
	if err := <-set; err != nil {
		t.Fatal(err)
	}
	if d.Limit == 0 {
		d = <-decided
	}
	if d.Allowed {
		t.Fatalf("a first decision racing a SetIf: %+v; want rejected (the window holds 5 of 5 before and after)", d)
	}
}
