//go:build chaos

package chaos

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/instancecounter"
	"github.com/distkit-go/distkit/primitives/lock"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// TestLaxPartition: one of two Lax counters is partitioned (blackholed,
// then cut) for many flush intervals while both keep counting; after the
// heal and Close, the total is exactly what was accepted.
func TestLaxPartition(t *testing.T) {
	ctx := context.Background()
	srv := env.Server(t)
	a, b := newClient(t, srv.Addr), newClient(t, srv.Addr)
	la, _ := counter.NewLax(a.b, counter.Options{Prefix: "chaos-lax", AllowedLag: 5 * time.Millisecond})
	lb, _ := counter.NewLax(b.b, counter.Options{Prefix: "chaos-lax", AllowedLag: 5 * time.Millisecond})
	var accepted atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, l := range []*counter.Lax{la, lb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if _, err := l.Inc(ctx, "k", 1); err == nil {
					accepted.Add(1)
				}
				time.Sleep(50 * time.Microsecond)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	a.proxy.Blackhole(true) // requests vanish: flushes time out, outcome unknown
	time.Sleep(300 * time.Millisecond)
	a.proxy.Cut() // connections reset
	time.Sleep(200 * time.Millisecond)
	pendingDuring := la.Pending()["k"]
	a.proxy.Restore()
	time.Sleep(100 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	for _, l := range []*counter.Lax{la, lb} {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := l.Close(cctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	s, _ := counter.NewStrict(b.b, counter.Options{Prefix: "chaos-lax"})
	got, err := s.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("partition of 500 ms (100 flush intervals): %d accepted, %d pending at the worst point, final %d", accepted.Load(), pendingDuring, got)
	if got != accepted.Load() {
		t.Fatalf("final %d != accepted %d: %d lost or double counted", got, accepted.Load(), accepted.Load()-got)
	}
}

// TestInstanceLaxPartition: an instance-aware Lax counter partitioned past
// DeadAfter is declared dead (its slice leaves the total), then heals,
// rejoins and contributes its slice exactly once.
func TestInstanceLaxPartition(t *testing.T) {
	ctx := context.Background()
	srv := env.Server(t)
	a, b := newClient(t, srv.Addr), newClient(t, srv.Addr)
	const dead = 300 * time.Millisecond
	ia, err := instancecounter.NewLax(a.b, instancecounter.Options{Prefix: "chaos-ic", InstanceID: "a", DeadAfter: dead, FlushInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ib, err := instancecounter.NewStrict(b.b, instancecounter.Options{Prefix: "chaos-ic", InstanceID: "b", DeadAfter: dead})
	if err != nil {
		t.Fatal(err)
	}
	var accepted int64
	for range 500 {
		if _, _, err := ia.Inc(ctx, "k", 1); err == nil {
			accepted++
		}
	}
	ib.Inc(ctx, "k", 1000)
	ia.Flush(ctx)
	a.proxy.Blackhole(true)
	for range 200 { // counted locally during the partition
		if _, _, err := ia.Inc(ctx, "k", 1); err == nil {
			accepted++
		}
	}
	time.Sleep(dead + 200*time.Millisecond)
	c, _, _ := ib.Get(ctx, "k")
	if c != 1000 {
		t.Fatalf("while a is partitioned past DeadAfter: cumulative %d, want 1000 (a's slice removed)", c)
	}
	a.proxy.Restore()
	healed := time.Now()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, _, _ = ib.Get(ctx, "k"); c == 1000+accepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the heal: cumulative %d, want %d", c, 1000+accepted)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("a rejoined %v after the heal; cumulative %d exact", time.Since(healed).Round(time.Millisecond), c)
	time.Sleep(2 * dead) // more heartbeats: no second contribution
	if c, _, _ = ib.Get(ctx, "k"); c != 1000+accepted {
		t.Fatalf("a contributed twice: %d", c)
	}
	ia.Close(ctx)
	ib.Close(ctx)
}

// TestLockPartition: the holder is partitioned past its TTL. It must see
// the loss within the bound, another client must get the lock, and after
// the heal the stale holder's Release and fenced write must be refused.
func TestLockPartition(t *testing.T) {
	ctx := context.Background()
	srv := env.Server(t)
	holder, other := newClient(t, srv.Addr), newClient(t, srv.Addr)
	const ttl = 300 * time.Millisecond
	m1, _ := lock.NewMutex(holder.b, "res", lock.Options{Prefix: "chaos-lock", TTL: ttl})
	m2, _ := lock.NewMutex(other.b, "res", lock.Options{Prefix: "chaos-lock", TTL: ttl, RetryInterval: 10 * time.Millisecond})
	fence, _ := counter.NewStrict(other.b, counter.Options{Prefix: "chaos-fence"})
	g1, err := m1.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	holder.proxy.Blackhole(true)
	cut := time.Now()
	select {
	case <-g1.Done():
	case <-time.After(2 * ttl):
		t.Fatal("partitioned holder did not report the loss")
	}
	lostAfter := time.Since(cut)
	// The next renewal starts within TTL/3 and times out after TTL/3; allow
	// scheduling slack on a loaded CI machine.
	if lostAfter > ttl/3+ttl/3+300*time.Millisecond {
		t.Fatalf("loss reported after %v; bound is TTL/3 + renewal timeout", lostAfter)
	}
	g2, err := m2.TryLockWithTimeout(ctx, 2*ttl)
	acquiredAfter := time.Since(cut)
	if err != nil {
		t.Fatalf("other client: %v", err)
	}
	if _, prev, _ := fence.SetIf(ctx, "f", distkit.Lt(g2.Token()), g2.Token()); prev >= g2.Token() {
		t.Fatal("the new holder's fenced write was refused")
	}
	holder.proxy.Restore()
	if _, prev, _ := fence.SetIf(ctx, "f", distkit.Lt(g1.Token()), g1.Token()); prev < g1.Token() {
		t.Fatal("the stale holder's fenced write was accepted")
	}
	if _, err := g1.Release(ctx); !errors.Is(err, distkit.ErrNotHeld) {
		t.Fatalf("stale Release: %v, want ErrNotHeld", err)
	}
	if g2.State() != lock.Acquired {
		t.Fatal("the stale Release disturbed the new holder")
	}
	g2.Release(ctx)
	t.Logf("holder partitioned: loss reported after %v, lock taken over after %v (TTL %v)", lostAfter.Round(time.Millisecond), acquiredAfter.Round(time.Millisecond), ttl)
}

// TestRateLimitUnderLatency: with 10 ms of latency on every client, the
// Redis provider still admits at most capacity in every window of length
// W, wherever it starts (server time).
func TestRateLimitUnderLatency(t *testing.T) {
	ctx := context.Background()
	srv := env.Server(t)
	const window = 500 * time.Millisecond
	limit := ratelimit.Per(50, window)
	var mu sync.Mutex
	var at []time.Time
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 3 {
		c := newClient(t, srv.Addr)
		c.proxy.Latency(10 * time.Millisecond)
		r, _ := ratelimit.NewRedis(c.b, ratelimit.Options{Prefix: "chaos-rl", Buckets: 10})
		defer r.Close(context.Background())
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					d, err := r.Absolute().Inc(ctx, "k", limit, 1)
					if err == nil && d.Allowed {
						mu.Lock()
						at = append(at, d.At)
						mu.Unlock()
					}
				}
			}()
		}
	}
	time.Sleep(1500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	capacity := int(limit.N)
	worst := testkit.MaxInWindow(at, window)
	t.Logf("under 10 ms latency: %d admitted, worst %v window (any start) %d, capacity %d", len(at), window, worst, capacity)
	if worst > capacity {
		t.Fatalf("a %v window admitted %d > capacity %d", window, worst, capacity)
	}
}
