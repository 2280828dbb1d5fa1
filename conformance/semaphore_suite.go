package conformance

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/semscript"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/semaphore"
)

func runSemaphore(t *testing.T, newHarness NewHarness) {
	t.Run("WeightedExclusionWitness", func(t *testing.T) { testSemWitness(t, newHarness(t)) })
	t.Run("NeverAboveCapacity", func(t *testing.T) { testSemOccupancy(t, newHarness(t)) })
	t.Run("TryPaths", func(t *testing.T) { testSemTryPaths(t, newHarness(t)) })
	t.Run("InvalidInput", func(t *testing.T) { testSemInvalid(t, newHarness(t)) })
	t.Run("FencingTokens", func(t *testing.T) { testSemFencing(t, newHarness(t)) })
	t.Run("WakeOnRelease", func(t *testing.T) { testSemWake(t, newHarness(t)) })
	t.Run("FIFONoStarvation", func(t *testing.T) { testSemFIFO(t, newHarness(t)) })
	t.Run("CancelLeavesNothing", func(t *testing.T) { testSemCancel(t, newHarness(t)) })
	t.Run("LateAttemptAfterGiveUp", func(t *testing.T) { testSemLateAttempt(t, newHarness(t)) })
	t.Run("HolderDies", func(t *testing.T) { testSemHolderDies(t, newHarness(t)) })
	t.Run("LeaseLost", func(t *testing.T) { testSemLeaseLost(t, newHarness(t)) })
	t.Run("SetCapacity", func(t *testing.T) { testSemSetCapacity(t, newHarness(t)) })
	t.Run("LostReply", func(t *testing.T) { testSemLostReply(t, newHarness(t)) })
	t.Run("Review20_BigNotStarved", func(t *testing.T) { testReview20BigNotStarved(t, newHarness(t)) })
	t.Run("Review20_AnyBytes", func(t *testing.T) { testReview20SemAnyBytes(t, newHarness(t)) })
	t.Run("Review20_QueueKeptForSlowPoller", func(t *testing.T) { testReview20QueueKeptForSlowPoller(t, newHarness(t)) })
}

// zcardScript reads the size of a sorted set, bypassing the primitive.
var zcardScript = driver.NewScript("conf-zcard", `return redis.call('ZCARD', KEYS[1])`,
	func(st driver.Store, keys, _ []string) (backend.Value, error) {
		n, err := st.ZCard(keys[0])
		return backend.Int(int64(n)), err
	})

func newSem(t *testing.T, b backend.Backend, name string, capacity int64, opts semaphore.Options) *semaphore.Semaphore {
	t.Helper()
	s, err := semaphore.New(b, name, capacity, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func releasePermit(t *testing.T, p *semaphore.Permit) {
	t.Helper()
	if st, err := p.Release(context.Background()); err != nil || st != semaphore.Released {
		t.Fatalf("Release: %v, %v", st, err)
	}
}

// testSemWitness: capacity 5, every request 3 units, so at most one holder
// at a time if weights count: a non-atomic witness (read, pause, write)
// loses updates under any overlap, which counting permits as 1 unit each
// would allow. Tokens rise in the order holders got in.
func testSemWitness(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	const workers, each = 5, 8
	var witness int64
	var mu sync.Mutex
	var tokens []int64
	var wg sync.WaitGroup
	for range workers {
		s := newSem(t, open(t, h), "res", 5, semaphore.Options{Prefix: p, RetryInterval: 5 * time.Millisecond})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				pm, err := s.Acquire(ctx, 3)
				if err != nil {
					t.Error(err)
					return
				}
				w := witness // non-atomic read-modify-write: overlap shows up as lost updates
				time.Sleep(300 * time.Microsecond)
				witness = w + 1
				mu.Lock()
				tokens = append(tokens, pm.Token())
				mu.Unlock()
				if _, err := pm.Release(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if witness != workers*each {
		t.Fatalf("exclusion broken: witness %d of %d acquisitions", witness, workers*each)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Fatalf("token %d at acquisition %d after %d", tokens[i], i, tokens[i-1])
		}
	}
}

// testSemOccupancy: many goroutines on separate clients take 1–3 units of
// a capacity-4 semaphore; the units held at once (tracked beside the
// semaphore) never exceed 4, and they do reach more than one holder at a
// time (the semaphore is not a mutex).
func testSemOccupancy(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	const capacity, workers, each = 4, 8, 8
	var mu sync.Mutex
	var held, peak, peakHolders, holders int64
	var wg sync.WaitGroup
	for w := range workers {
		s := newSem(t, open(t, h), "res", capacity, semaphore.Options{Prefix: p, RetryInterval: 5 * time.Millisecond})
		rng := rand.New(rand.NewPCG(uint64(w), 1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				n := 1 + rng.Int64N(3)
				pm, err := s.Acquire(ctx, n)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				held += n
				holders++
				peak, peakHolders = max(peak, held), max(peakHolders, holders)
				mu.Unlock()
				time.Sleep(time.Millisecond)
				mu.Lock()
				held -= n
				holders--
				mu.Unlock()
				if _, err := pm.Release(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if peak > capacity {
		t.Fatalf("%d units held at once, capacity %d", peak, capacity)
	}
	if peakHolders < 2 {
		t.Fatalf("never more than %d holder at once: the semaphore behaves like a mutex", peakHolders)
	}
	t.Logf("peak: %d units, %d holders", peak, peakHolders)
}

func testSemTryPaths(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	opts := semaphore.Options{Prefix: p, RetryInterval: 20 * time.Millisecond}
	a := newSem(t, open(t, h), "res", 3, opts)
	b := newSem(t, open(t, h), "res", 3, opts)
	p1, err := a.TryAcquire(ctx, 2)
	if err != nil || p1.N() != 2 || p1.State() != semaphore.Acquired || p1.Attempt() != 0 {
		t.Fatalf("TryAcquire(2) on a free semaphore: %v, %v", p1, err)
	}
	p2, err := b.TryAcquire(ctx, 1)
	if err != nil {
		t.Fatalf("TryAcquire(1) with 1 unit free: %v", err)
	}
	if used, err := a.Used(ctx); err != nil || used != 3 {
		t.Fatalf("Used: %d, %v; want 3", used, err)
	}
	if _, err := b.TryAcquire(ctx, 1); !errors.Is(err, distkit.ErrNotAcquired) {
		t.Fatalf("TryAcquire on a full semaphore: %v, want ErrNotAcquired", err)
	}
	start := time.Now()
	if _, err := b.TryAcquireWithTimeout(ctx, 1, 100*time.Millisecond); !errors.Is(err, distkit.ErrTimeout) {
		t.Fatalf("TryAcquireWithTimeout: %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Fatalf("timed out after %v, before the 100 ms asked", el)
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := b.Acquire(cctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire with a 50 ms ctx: %v, want DeadlineExceeded", err)
	}
	releasePermit(t, p2)
	if st, err := p2.Release(ctx); st != semaphore.Released || err != nil {
		t.Fatalf("second Release: %v, %v", st, err)
	}
	select {
	case <-p2.Done():
	default:
		t.Fatal("Done not closed after Release")
	}
	if err := context.Cause(p2.Context(ctx)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Context after Release: cause %v", err)
	}
	p3, err := b.TryAcquireWithTimeout(ctx, 1, time.Second)
	if err != nil {
		t.Fatalf("TryAcquireWithTimeout with a unit free: %v", err)
	}
	releasePermit(t, p3)
	releasePermit(t, p1)
	if used, err := a.Used(ctx); err != nil || used != 0 {
		t.Fatalf("Used after every release: %d, %v", used, err)
	}
	var nilPermit *semaphore.Permit
	if st, err := nilPermit.Release(ctx); st != semaphore.Released || !errors.Is(err, distkit.ErrNotHeld) {
		t.Fatalf("nil Permit Release: %v, %v", st, err)
	}
}

func testSemInvalid(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	b := open(t, h)
	for _, c := range []struct {
		what     string
		capacity int64
		opts     semaphore.Options
		want     error
	}{
		{"capacity 0", 0, semaphore.Options{Prefix: p}, distkit.ErrInvalidOption},
		{"capacity -1", -1, semaphore.Options{Prefix: p}, distkit.ErrInvalidOption},
		{"capacity above 2^52", semaphore.MaxCapacity + 1, semaphore.Options{Prefix: p}, distkit.ErrInvalidOption},
		{"TTL below minimum", 1, semaphore.Options{Prefix: p, TTL: time.Millisecond}, distkit.ErrInvalidOption},
		{"RetryInterval below 1ms", 1, semaphore.Options{Prefix: p, RetryInterval: time.Microsecond}, distkit.ErrInvalidOption},
	} {
		if _, err := semaphore.New(b, "res", c.capacity, c.opts); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.what, err, c.want)
		}
	}
	if _, err := semaphore.New(b, "", 1, semaphore.Options{Prefix: p}); !errors.Is(err, distkit.ErrInvalidKey) {
		t.Errorf("empty name: %v", err)
	}
	if _, err := semaphore.New(nil, "res", 1, semaphore.Options{}); !errors.Is(err, distkit.ErrInvalidOption) {
		t.Errorf("nil backend: %v", err)
	}
	s := newSem(t, b, "res", 3, semaphore.Options{Prefix: p})
	for _, n := range []int64{0, -1, 4, 1 << 62} {
		start := time.Now()
		if _, err := s.Acquire(ctx, n); !errors.Is(err, distkit.ErrInvalidOption) {
			t.Errorf("Acquire(%d) with capacity 3: %v, want ErrInvalidOption", n, err)
		}
		if _, err := s.TryAcquire(ctx, n); !errors.Is(err, distkit.ErrInvalidOption) {
			t.Errorf("TryAcquire(%d): %v", n, err)
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("Acquire(%d) took %v: it must fail at once", n, el)
		}
	}
	if _, err := s.TryAcquireWithTimeout(ctx, 1, 0); !errors.Is(err, distkit.ErrInvalidOption) {
		t.Errorf("TryAcquireWithTimeout(0): %v", err)
	}
	for _, c := range []int64{0, semaphore.MaxCapacity + 1} {
		if err := s.SetCapacity(c); !errors.Is(err, distkit.ErrInvalidOption) || s.Capacity() != 3 {
			t.Errorf("SetCapacity(%d): %v, capacity %d", c, err, s.Capacity())
		}
	}
	// The largest capacity is exact in the scripts: two permits of half of
	// it fill it, one more unit does not fit.
	big := newSem(t, b, "big", semaphore.MaxCapacity, semaphore.Options{Prefix: p})
	p1, err := big.TryAcquire(ctx, semaphore.MaxCapacity/2)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := big.TryAcquire(ctx, semaphore.MaxCapacity/2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := big.TryAcquire(ctx, 1); !errors.Is(err, distkit.ErrNotAcquired) {
		t.Errorf("one unit above MaxCapacity: %v, want ErrNotAcquired", err)
	}
	if used, err := big.Used(ctx); err != nil || used != semaphore.MaxCapacity {
		t.Errorf("Used at MaxCapacity: %d, %v", used, err)
	}
	releasePermit(t, p1)
	releasePermit(t, p2)
}

func testSemFencing(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	var last int64
	var held []*semaphore.Permit
	for i := range 6 {
		s := newSem(t, open(t, h), "res", 3, semaphore.Options{Prefix: p}) // a new value each time
		pm, err := s.Acquire(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if pm.Token() <= last {
			t.Fatalf("acquisition %d: token %d not above %d", i, pm.Token(), last)
		}
		last = pm.Token()
		held = append(held, pm)
		if len(held) == 3 { // concurrent holders get distinct, rising tokens too
			for _, q := range held {
				releasePermit(t, q)
			}
			held = held[:0]
		}
	}
}

func testSemWake(t *testing.T, h Harness) {
	b := open(t, h)
	if _, ok := b.(backend.Notifier); !ok {
		t.Skip("backend is not a Notifier")
	}
	ctx := context.Background()
	p := prefix(t)
	// Polling alone would take 2 s; a notified waiter takes a round trip.
	opts := semaphore.Options{Prefix: p, RetryInterval: 2 * time.Second}
	holder := newSem(t, b, "res", 2, opts)
	pm, err := holder.Acquire(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	waiter := newSem(t, open(t, h), "res", 2, opts)
	got := make(chan time.Time, 1)
	go func() {
		q, err := waiter.Acquire(ctx, 1)
		if err != nil {
			t.Error(err)
			got <- time.Time{}
			return
		}
		got <- time.Now()
		q.Release(ctx)
	}()
	time.Sleep(150 * time.Millisecond) // the waiter has tried once and waits
	released := time.Now()
	releasePermit(t, pm)
	select {
	case at := <-got:
		if d := at.Sub(released); d > time.Second {
			t.Fatalf("hand-off took %v: the waiter was not woken", d)
		} else {
			t.Logf("hand-off in %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter never acquired")
	}
}

// testSemFIFO: with 3 of 4 units held, a waiter for 4 queues; a later
// request for 1 (which would fit) must wait behind it, and gets in only
// after the big one had its turn.
func testSemFIFO(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	opts := semaphore.Options{Prefix: p, RetryInterval: 10 * time.Millisecond}
	holder := newSem(t, open(t, h), "res", 4, opts)
	big := newSem(t, open(t, h), "res", 4, opts)
	small := newSem(t, open(t, h), "res", 4, opts)
	ph, err := holder.Acquire(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	bigDone := make(chan struct{})
	go func() {
		defer close(bigDone)
		pb, err := big.Acquire(ctx, 4)
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		order = append(order, "big")
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		pb.Release(ctx)
	}()
	// The big request has queued once TryAcquire(1) is refused although
	// 1 unit is free.
	testkit.Eventually(t, 5*time.Second, "the big request queues", func() bool {
		q, err := small.TryAcquire(ctx, 1)
		if err == nil {
			q.Release(ctx)
			return false
		}
		return errors.Is(err, distkit.ErrNotAcquired)
	})
	smallDone := make(chan struct{})
	go func() {
		defer close(smallDone)
		ps, err := small.Acquire(ctx, 1)
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		order = append(order, "small")
		mu.Unlock()
		ps.Release(ctx)
	}()
	time.Sleep(100 * time.Millisecond) // the small request had many chances to cut in
	mu.Lock()
	if len(order) != 0 {
		t.Errorf("%v got in while 3 units were held and the big request waited", order)
	}
	mu.Unlock()
	releasePermit(t, ph)
	<-bigDone
	<-smallDone
	if len(order) != 2 || order[0] != "big" {
		t.Fatalf("order %v, want [big small]", order)
	}
}

// testSemCancel: a waiter whose ctx ends leaves the line at once, so the
// ones behind it are not held back by its mark.
func testSemCancel(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	opts := semaphore.Options{Prefix: p, RetryInterval: 10 * time.Millisecond}
	holder := newSem(t, open(t, h), "res", 2, opts)
	waiter := newSem(t, open(t, h), "res", 2, semaphore.Options{Prefix: p, RetryInterval: time.Hour}) // its mark would last 3 h
	other := newSem(t, open(t, h), "res", 2, opts)
	ph, err := holder.Acquire(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	// Cancelled before the call: no attempt, no mark.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := waiter.Acquire(cctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a cancelled ctx: %v", err)
	}
	// Cancelled while queued.
	wctx, wcancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := waiter.Acquire(wctx, 2)
		errc <- err
	}()
	k := keyspace.Semaphore(p, "res")
	probe := open(t, h)
	testkit.Eventually(t, 5*time.Second, "the waiter queues", func() bool {
		return evalInt(t, probe, zcardScript, []string{k.Queue}) == 1
	})
	wcancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled wait: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled wait did not return")
	}
	// The wait removes its place in the background (its last attempt may
	// have been cut short); its mark alone would last 3 h.
	testkit.Eventually(t, 2*time.Second, "the cancelled waiter leaves the line", func() bool {
		return evalInt(t, probe, zcardScript, []string{k.Queue}) == 0
	})
	releasePermit(t, ph)
	po, err := other.TryAcquire(ctx, 2)
	if err != nil {
		t.Fatalf("TryAcquire after the cancelled waiter left: %v", err)
	}
	releasePermit(t, po)
}

// testSemHolderDies: a holder whose process is gone (its backend closed:
// no more renewals) frees its units when its lease expires.
func testSemHolderDies(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	const ttl = 200 * time.Millisecond
	dying := h.NewBackend(t)
	s := newSem(t, dying, "res", 3, semaphore.Options{Prefix: p, TTL: ttl})
	pd, err := s.Acquire(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	dying.Close()
	waiter := newSem(t, open(t, h), "res", 3, semaphore.Options{Prefix: p, TTL: ttl, RetryInterval: 10 * time.Millisecond})
	pw1, err := waiter.TryAcquire(ctx, 1) // the free unit
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var pw2 *semaphore.Permit
	go func() {
		var err error
		pw2, err = waiter.Acquire(ctx, 2)
		done <- err
	}()
	pass(t, h, ttl+100*time.Millisecond)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter did not get the units after the holder's lease expired")
	}
	select {
	case <-pd.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the dead holder's permit never reported its loss")
	}
	if pd.State() != semaphore.Lost {
		t.Fatalf("dead holder's permit: %v", pd.State())
	}
	// pw1 kept renewing across the wait.
	if pw1.State() != semaphore.Acquired {
		t.Fatalf("live holder's permit: %v", pw1.State())
	}
	releasePermit(t, pw2)
	releasePermit(t, pw1)
	if _, err := pd.Release(ctx); !errors.Is(err, distkit.ErrNotHeld) {
		t.Fatalf("Release of a lost permit: %v, want ErrNotHeld", err)
	}
}

// testSemLeaseLost: a permit whose entry disappears is told on its next
// renewal, and its Release says it was not held.
func testSemLeaseLost(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	b := open(t, h)
	s := newSem(t, b, "res", 2, semaphore.Options{Prefix: p, TTL: 300 * time.Millisecond})
	pm, err := s.Acquire(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	work := pm.Context(ctx)
	if _, err := b.EvalScript(ctx, testkit.DelKeyScript, []string{keyspace.Semaphore(p, "res").Holders}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for pm.State() == semaphore.Acquired && time.Now().Before(deadline) {
		pass(t, h, 20*time.Millisecond)
	}
	if pm.State() != semaphore.Lost {
		t.Fatalf("state %v after the permit was deleted", pm.State())
	}
	if err := context.Cause(work); !errors.Is(err, distkit.ErrLeaseLost) {
		t.Fatalf("context cause %v, want ErrLeaseLost", err)
	}
	if st, err := pm.Release(ctx); st != semaphore.Lost || !errors.Is(err, distkit.ErrNotHeld) {
		t.Fatalf("Release of a lost permit: %v, %v", st, err)
	}
}

func testSemSetCapacity(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	opts := semaphore.Options{Prefix: p, RetryInterval: 10 * time.Millisecond}
	holder := newSem(t, open(t, h), "res", 1, opts)
	waiter := newSem(t, open(t, h), "res", 1, opts)
	ph, err := holder.Acquire(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	var pw *semaphore.Permit
	go func() {
		var err error
		pw, err = waiter.Acquire(ctx, 1)
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("waiter got in at capacity 1: %v", err)
	default:
	}
	if err := waiter.SetCapacity(2); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter did not get in after SetCapacity(2)")
	}
	// A wait for more than a lowered capacity ends with an error.
	big := newSem(t, open(t, h), "res", 3, opts)
	errc := make(chan error, 1)
	go func() {
		_, err := big.Acquire(ctx, 3)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	big.SetCapacity(2)
	select {
	case err := <-errc:
		if !errors.Is(err, distkit.ErrInvalidOption) {
			t.Fatalf("wait for 3 units after SetCapacity(2): %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a wait for more than the lowered capacity did not end")
	}
	releasePermit(t, pw)
	releasePermit(t, ph)
}

// testSemLostReply: an acquisition whose reply is lost (it ran) is
// recognised by the wait's next attempt, which gets the same permit rather
// than a second one; a single attempt whose reply is lost gives the permit
// back.
func testSemLostReply(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	w := testkit.Wrap(open(t, h))
	s := newSem(t, w, "res", 3, semaphore.Options{Prefix: p, RetryInterval: 10 * time.Millisecond})
	w.LoseNextReply(semscript.Acquire.Name())
	pm, err := s.Acquire(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if used, err := s.Used(ctx); err != nil || used != 2 {
		t.Fatalf("after a lost reply and a retry: %d units used (%v), want 2", used, err)
	}
	releasePermit(t, pm)
	w.LoseNextReply(semscript.Acquire.Name())
	if _, err := s.TryAcquire(ctx, 3); !errors.Is(err, distkit.ErrIndeterminate) {
		t.Fatalf("TryAcquire with its reply lost: %v, want ErrIndeterminate", err)
	}
	testkit.Eventually(t, 2*time.Second, "the unknown permit is given back", func() bool {
		used, err := s.Used(ctx)
		return err == nil && used == 0
	})
}
