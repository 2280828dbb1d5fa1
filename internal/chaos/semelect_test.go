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
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/election"
	"github.com/distkit-go/distkit/primitives/semaphore"
)

// TestSemaphorePartition: a holder of every unit is partitioned; it
// reports its permit lost within its TTL, another client then gets the
// units with a higher token, the stale holder's fenced write is refused
// and its Release neither succeeds nor frees the new holder's units.
func TestSemaphorePartition(t *testing.T) {
	ctx := context.Background()
	srv := env.Server(t)
	holder, other := newClient(t, srv.Addr), newClient(t, srv.Addr)
	const ttl = 300 * time.Millisecond
	s1, _ := semaphore.New(holder.b, "res", 2, semaphore.Options{Prefix: "chaos-sem", TTL: ttl})
	s2, _ := semaphore.New(other.b, "res", 2, semaphore.Options{Prefix: "chaos-sem", TTL: ttl, RetryInterval: 10 * time.Millisecond})
	fence, _ := counter.NewStrict(other.b, counter.Options{Prefix: "chaos-sem-fence"})
	p1, err := s1.Acquire(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	holder.proxy.Blackhole(true)
	cut := time.Now()
	select {
	case <-p1.Done():
	case <-time.After(2 * ttl):
		t.Fatal("partitioned holder did not report the loss")
	}
	lostAfter := time.Since(cut)
	if lostAfter > ttl+200*time.Millisecond {
		t.Fatalf("loss reported after %v; bound is TTL after the last confirmed renewal", lostAfter)
	}
	p2, err := s2.TryAcquireWithTimeout(ctx, 2, 2*ttl)
	acquiredAfter := time.Since(cut)
	if err != nil {
		t.Fatalf("other client: %v", err)
	}
	if p2.Token() <= p1.Token() {
		t.Fatalf("new token %d not above the stale %d", p2.Token(), p1.Token())
	}
	if _, prev, _ := fence.SetIf(ctx, "f", distkit.Lt(p2.Token()), p2.Token()); prev >= p2.Token() {
		t.Fatal("the new holder's fenced write was refused")
	}
	holder.proxy.Restore()
	if _, prev, _ := fence.SetIf(ctx, "f", distkit.Lt(p1.Token()), p1.Token()); prev < p1.Token() {
		t.Fatal("the stale holder's fenced write was accepted")
	}
	if _, err := p1.Release(ctx); !errors.Is(err, distkit.ErrNotHeld) {
		t.Fatalf("stale Release: %v, want ErrNotHeld", err)
	}
	if used, err := s2.Used(ctx); err != nil || used != 2 || p2.State() != semaphore.Acquired {
		t.Fatalf("after the stale Release: used %d (%v), new holder %v", used, err, p2.State())
	}
	p2.Release(ctx)
	t.Logf("holder partitioned: loss reported after %v, units taken over after %v (TTL %v)", lostAfter.Round(time.Millisecond), acquiredAfter.Round(time.Millisecond), ttl)
}

// TestSemaphoreFaultsLeaveNothing: clients acquire and release under
// random latency, blackholes and cuts; once the faults stop, nothing is
// left behind: no permit outlives its TTL, no waiter's place blocks the
// line, and the whole capacity can be taken at once.
func TestSemaphoreFaultsLeaveNothing(t *testing.T) {
	ctx := context.Background()
	srv := env.Server(t)
	r := rng(t)
	const ttl, capacity = 300 * time.Millisecond, 3
	var clients []*client
	var sems []*semaphore.Semaphore
	for range 4 {
		c := newClient(t, srv.Addr)
		clients = append(clients, c)
		s, _ := semaphore.New(c.b, "res", capacity, semaphore.Options{Prefix: "chaos-sem-faults", TTL: ttl, RetryInterval: 10 * time.Millisecond})
		sems = append(sems, s)
	}
	var stop atomic.Bool
	var acquired, failed atomic.Int64
	var wg sync.WaitGroup
	for i, s := range sems {
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n := int64(1 + (i+g)%2)
				for !stop.Load() {
					p, err := s.TryAcquireWithTimeout(ctx, n, 200*time.Millisecond)
					if err != nil {
						failed.Add(1)
						continue
					}
					acquired.Add(1)
					time.Sleep(2 * time.Millisecond)
					p.Release(ctx)
				}
			}()
		}
	}
	counts := injectFaults(r, clients, 2*time.Second)
	stop.Store(true)
	wg.Wait()
	check := sems[0]
	start := time.Now()
	var p *semaphore.Permit
	var err error
	// Whatever a wait cut short by a fault left behind (a permit taken
	// without its reply arriving, a place in line) is removed by its
	// clean-up or expires: a permit by its TTL, a place by its mark. A
	// permit that went on renewing, or a place that never expired, would
	// hold the capacity forever.
	bound := ttl + 500*time.Millisecond
	for time.Since(start) < bound {
		if p, err = check.TryAcquire(ctx, capacity); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		used, uerr := check.Used(ctx)
		t.Fatalf("the whole capacity could not be taken %v after the faults: %v (used %d, %v)", bound, err, used, uerr)
	}
	p.Release(ctx)
	t.Logf("faults %v: %d acquisitions, %d waits failed; whole capacity free %v after the faults stopped", counts, acquired.Load(), failed.Load(), time.Since(start).Round(time.Millisecond))
}

// TestElectionPartition: the leader is partitioned while a candidate
// waits; the old leader is told (Done) no later than the new leader is
// elected (its deadline comes before the server's expiry), the new term's
// token is higher, and the old leader's fenced write is refused.
func TestElectionPartition(t *testing.T) {
	ctx := context.Background()
	srv := env.Server(t)
	a, b := newClient(t, srv.Addr), newClient(t, srv.Addr)
	const ttl = 300 * time.Millisecond
	ea, _ := election.New(a.b, "sched", election.Options{Prefix: "chaos-elect", TTL: ttl})
	eb, _ := election.New(b.b, "sched", election.Options{Prefix: "chaos-elect", TTL: ttl, RetryInterval: 5 * time.Millisecond})
	fence, _ := counter.NewStrict(b.b, counter.Options{Prefix: "chaos-elect-fence"})
	la, err := ea.Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	var toldAt atomic.Int64
	go func() { <-la.Done(); toldAt.Store(time.Now().UnixNano()) }()
	elected := make(chan *election.Leadership, 1)
	go func() {
		lb, err := eb.Campaign(ctx, "b")
		if err != nil {
			t.Error(err)
		}
		elected <- lb
	}()
	time.Sleep(50 * time.Millisecond)
	a.proxy.Blackhole(true)
	cut := time.Now()
	var lb *election.Leadership
	select {
	case lb = <-elected:
	case <-time.After(5 * time.Second):
		t.Fatal("no new leader while the old one was partitioned")
	}
	electedAt := time.Now()
	if lb == nil {
		t.FailNow()
	}
	told := toldAt.Load()
	if told == 0 || time.Unix(0, told).After(electedAt) {
		t.Fatalf("the new leader was elected %v after the cut, before the old leader was told (state %v)", electedAt.Sub(cut), la.State())
	}
	if lb.Token() <= la.Token() {
		t.Fatalf("new term's token %d not above %d", lb.Token(), la.Token())
	}
	if _, prev, _ := fence.SetIf(ctx, "f", distkit.Lt(lb.Token()), lb.Token()); prev >= lb.Token() {
		t.Fatal("the new leader's fenced write was refused")
	}
	a.proxy.Restore()
	if _, prev, _ := fence.SetIf(ctx, "f", distkit.Lt(la.Token()), la.Token()); prev < la.Token() {
		t.Fatal("the old leader's fenced write was accepted")
	}
	if err := la.Proclaim(ctx, "still me"); !errors.Is(err, distkit.ErrNotHeld) {
		t.Fatalf("old leader's Proclaim: %v, want ErrNotHeld", err)
	}
	if term, err := eb.Leader(ctx); err != nil || term.Token != lb.Token() {
		t.Fatalf("Leader after the heal: %+v, %v", term, err)
	}
	lb.Resign(ctx)
	t.Logf("leader partitioned: told after %v, new leader after %v (TTL %v)", time.Unix(0, told).Sub(cut).Round(time.Millisecond), electedAt.Sub(cut).Round(time.Millisecond), ttl)
}
