package conformance

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/lock"
)

// pass lets d of both real and server time go by.
func pass(t *testing.T, h Harness, d time.Duration) { testkit.Pass(t, h, d) }

func runLocks(t *testing.T, newHarness NewHarness) {
	t.Run("MutexExclusion", func(t *testing.T) { testMutexExclusion(t, newHarness(t)) })
	t.Run("TryPaths", func(t *testing.T) { testTryPaths(t, newHarness(t)) })
	t.Run("ReleaseAndContext", func(t *testing.T) { testRelease(t, newHarness(t)) })
	t.Run("LeaseLost", func(t *testing.T) { testLeaseLost(t, newHarness(t)) })
	t.Run("LeaseExpiresWhenHolderDies", func(t *testing.T) { testHolderDies(t, newHarness(t)) })
	t.Run("FencingTokens", func(t *testing.T) { testFencing(t, newHarness(t)) })
	t.Run("WakeOnRelease", func(t *testing.T) { testWake(t, newHarness(t)) })
	t.Run("PublishOnlyWhenWaited", func(t *testing.T) { testReleasePublishesOnlyWhenWaited(t, newHarness(t)) })
	t.Run("RWReadersOverlapWritersExclude", func(t *testing.T) { testRWBasics(t, newHarness(t)) })
	t.Run("RWWriterPreference", func(t *testing.T) { testRWWriterPreference(t, newHarness(t)) })
	t.Run("RWWriterNotStarved", func(t *testing.T) { testRWNotStarved(t, newHarness(t)) })
	t.Run("RWCrashedReaderExpiresAlone", func(t *testing.T) { testRWCrashedReader(t, newHarness(t)) })
	t.Run("InvalidOptions", func(t *testing.T) { testLockOptions(t, newHarness(t)) })
	t.Run("BackendDownWhileHeld", func(t *testing.T) { testLockBackendDown(t, newHarness(t)) })
	runLockLeases(t, newHarness)
}

func newMutex(t *testing.T, b backend.Backend, name string, opts lock.Options) *lock.Mutex {
	t.Helper()
	m, err := lock.NewMutex(b, name, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newRW(t *testing.T, b backend.Backend, name string, opts lock.Options) *lock.RWMutex {
	t.Helper()
	m, err := lock.NewRWMutex(b, name, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func release(t *testing.T, g *lock.Guard) {
	t.Helper()
	if st, err := g.Release(context.Background()); err != nil || st != lock.Released {
		t.Fatalf("Release: %v, %v", st, err)
	}
}

// testMutexExclusion: goroutines on separate clients hammer one name. A
// non-atomic witness (read, pause, write) would lose updates under any
// overlap; occupancy catches overlap directly; tokens must rise in the
// order holders got in.
func testMutexExclusion(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	const workers, each = 6, 15
	var witness, occupancy int64
	var overlaps atomic.Int64
	var tokens []int64
	var wg sync.WaitGroup
	for range workers {
		m := newMutex(t, open(t, h), "res", lock.Options{Prefix: p, RetryInterval: 5 * time.Millisecond})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				g, err := m.Lock(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if atomic.AddInt64(&occupancy, 1) != 1 {
					overlaps.Add(1)
				}
				w := witness // non-atomic read-modify-write: races show up as lost updates
				time.Sleep(200 * time.Microsecond)
				witness = w + 1
				tokens = append(tokens, g.Token())
				atomic.AddInt64(&occupancy, -1)
				if _, err := g.Release(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if overlaps.Load() != 0 || witness != workers*each {
		t.Fatalf("exclusion broken: %d overlaps, witness %d of %d acquisitions", overlaps.Load(), witness, workers*each)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Fatalf("token %d at acquisition %d after %d", tokens[i], i, tokens[i-1])
		}
	}
}

func testTryPaths(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	opts := lock.Options{Prefix: p, RetryInterval: 20 * time.Millisecond}
	holder := newMutex(t, open(t, h), "res", opts)
	other := newMutex(t, open(t, h), "res", opts)
	g, err := holder.TryLock(ctx)
	if err != nil || g.Attempt() != 0 {
		t.Fatalf("TryLock on a free lock: %v, attempt %v", err, g)
	}
	if _, err := other.TryLock(ctx); !errors.Is(err, distkit.ErrNotAcquired) {
		t.Fatalf("TryLock on a held lock: %v, want ErrNotAcquired", err)
	}
	start := time.Now()
	if _, err := other.TryLockWithTimeout(ctx, 100*time.Millisecond); !errors.Is(err, distkit.ErrTimeout) {
		t.Fatalf("TryLockWithTimeout: %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Fatalf("timed out after %v, before the 100 ms asked", el)
	}
	_, err = other.TryLockWithRetries(ctx, 2)
	var re *distkit.RetriesError
	if !errors.Is(err, distkit.ErrRetriesExhausted) || !errors.As(err, &re) || re.Attempts != 3 {
		t.Fatalf("TryLockWithRetries(2): %v, want RetriesError with 3 attempts", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := other.Lock(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with a done ctx: %v", err)
	}
	if _, err := other.TryLockWithRetries(ctx, -1); !errors.Is(err, distkit.ErrInvalidOption) {
		t.Fatalf("negative retries: %v", err)
	}
	if _, err := other.TryLockWithTimeout(ctx, 0); !errors.Is(err, distkit.ErrInvalidOption) {
		t.Fatalf("zero timeout: %v", err)
	}
	release(t, g)
	// None of the failed paths left a lease behind.
	g2, err := other.TryLock(ctx)
	if err != nil {
		t.Fatalf("TryLock after release: %v", err)
	}
	release(t, g2)
	// Retries succeed when the lock frees up between attempts.
	g3, _ := holder.TryLock(ctx)
	go func() {
		time.Sleep(30 * time.Millisecond)
		g3.Release(ctx)
	}()
	g4, err := other.TryLockWithRetries(ctx, 100)
	if err != nil || g4.Attempt() == 0 {
		t.Fatalf("TryLockWithRetries after a release: %v (attempt %d)", err, g4.Attempt())
	}
	release(t, g4)
}

func testRelease(t *testing.T, h Harness) {
	ctx := context.Background()
	m := newMutex(t, open(t, h), "res", lock.Options{Prefix: prefix(t)})
	g, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g.State() != lock.Acquired {
		t.Fatalf("state %v", g.State())
	}
	wctx := g.Context(ctx)
	select {
	case <-g.Done():
		t.Fatal("Done closed while held")
	default:
	}
	release(t, g)
	if st, err := g.Release(ctx); st != lock.Released || err != nil {
		t.Fatalf("second Release: %v, %v", st, err)
	}
	select {
	case <-g.Done():
	default:
		t.Fatal("Done not closed after Release")
	}
	if wctx.Err() == nil || g.Context(ctx).Err() == nil {
		t.Fatal("Context not cancelled after Release")
	}
}

var (
	delKeyScript  = testkit.DelKeyScript
	expire1Script = driver.NewScript("conf-pexpire1", `return redis.call('PEXPIRE', KEYS[1], 1)`,
		func(st driver.Store, keys, _ []string) (backend.Value, error) {
			return backend.Bool(st.PExpire(keys[0], time.Millisecond)), nil
		})
)

func testLeaseLost(t *testing.T, h Harness) {
	for _, how := range []struct {
		name string
		s    backend.Script
	}{{"deleted", delKeyScript}, {"pexpire1", expire1Script}} {
		t.Run(how.name, func(t *testing.T) {
			ctx := context.Background()
			p := prefix(t)
			const ttl = 300 * time.Millisecond
			m := newMutex(t, open(t, h), "res", lock.Options{Prefix: p, TTL: ttl})
			g, err := m.Lock(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wctx := g.Context(ctx)
			admin := open(t, h)
			if _, err := admin.EvalScript(ctx, how.s, []string{keyspace.Lock(p, "res").Lock}); err != nil {
				t.Fatal(err)
			}
			if how.s == expire1Script {
				h.Wait(t, 5*time.Millisecond)
			}
			start := time.Now()
			select {
			case <-g.Done():
			case <-time.After(ttl/3 + time.Second):
				t.Fatalf("Done not closed within TTL/3 + 1 s of losing the lease")
			}
			t.Logf("loss noticed after %v (TTL/3 = %v)", time.Since(start), ttl/3)
			if g.State() != lock.Lost || !errors.Is(context.Cause(wctx), distkit.ErrLeaseLost) {
				t.Fatalf("state %v, context cause %v", g.State(), context.Cause(wctx))
			}
			// Someone else takes the lock; the stale Release must not touch it.
			next := newMutex(t, open(t, h), "res", lock.Options{Prefix: p, TTL: ttl})
			g2, err := next.TryLock(ctx)
			if err != nil {
				t.Fatalf("new holder: %v", err)
			}
			if st, err := g.Release(ctx); st != lock.Lost || !errors.Is(err, distkit.ErrNotHeld) {
				t.Fatalf("stale Release: %v, %v; want Lost, ErrNotHeld", st, err)
			}
			if _, err := m.TryLock(ctx); !errors.Is(err, distkit.ErrNotAcquired) {
				t.Fatalf("the new holder's lease was disturbed: %v", err)
			}
			if g2.Token() <= g.Token() {
				t.Fatalf("new token %d not above stale %d", g2.Token(), g.Token())
			}
			release(t, g2)
		})
	}
}

func testHolderDies(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	const ttl = 200 * time.Millisecond
	dying := h.NewBackend(t)
	m := newMutex(t, dying, "res", lock.Options{Prefix: p, TTL: ttl})
	g, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dying.Close() // the holder's process is gone: no more renewals
	waiter := newMutex(t, open(t, h), "res", lock.Options{Prefix: p, TTL: ttl, RetryInterval: 10 * time.Millisecond})
	done := make(chan error, 1)
	var g2 *lock.Guard
	go func() {
		var err error
		g2, err = waiter.Lock(ctx)
		done <- err
	}()
	pass(t, h, ttl+100*time.Millisecond)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter did not get the lock after the holder's lease expired")
	}
	release(t, g2)
	g.Release(ctx) // stops the dead holder's renewal goroutine
}

func testFencing(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	var last int64
	for i := range 4 {
		m := newMutex(t, open(t, h), "res", lock.Options{Prefix: p}) // a new Mutex value each time
		g, err := m.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if g.Token() <= last {
			t.Fatalf("acquisition %d: token %d not above %d", i, g.Token(), last)
		}
		last = g.Token()
		release(t, g)
	}
	rw := newRW(t, open(t, h), "res", lock.Options{Prefix: p})
	g, err := rw.RLock(ctx)
	if err != nil || g.Token() <= last {
		t.Fatalf("reader token %d after %d: %v", g.Token(), last, err)
	}
	release(t, g)
}

func testWake(t *testing.T, h Harness) {
	b := open(t, h)
	if _, ok := b.(backend.Notifier); !ok {
		t.Skip("backend is not a Notifier")
	}
	ctx := context.Background()
	p := prefix(t)
	// Polling alone would take 2 s; a notified waiter takes a round trip.
	opts := lock.Options{Prefix: p, RetryInterval: 2 * time.Second}
	holder := newMutex(t, b, "res", opts)
	g, err := holder.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waiter := newMutex(t, open(t, h), "res", opts)
	got := make(chan time.Time, 1)
	go func() {
		g2, err := waiter.Lock(ctx)
		if err != nil {
			t.Error(err)
			got <- time.Time{}
			return
		}
		got <- time.Now()
		g2.Release(ctx)
	}()
	time.Sleep(100 * time.Millisecond) // the waiter has tried once and waits
	released := time.Now()
	release(t, g)
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

func testRWBasics(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	rw1 := newRW(t, open(t, h), "res", lock.Options{Prefix: p})
	rw2 := newRW(t, open(t, h), "res", lock.Options{Prefix: p})
	r1, err := rw1.TryRLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := rw2.TryRLock(ctx)
	if err != nil {
		t.Fatalf("second reader: %v (readers must overlap)", err)
	}
	if _, err := rw2.TryLock(ctx); !errors.Is(err, distkit.ErrNotAcquired) {
		t.Fatalf("writer while readers hold: %v", err)
	}
	release(t, r1)
	if _, err := rw2.TryLock(ctx); !errors.Is(err, distkit.ErrNotAcquired) {
		t.Fatalf("writer while one reader holds: %v", err)
	}
	release(t, r2)
	w, err := rw1.TryLockWithTimeout(ctx, time.Second)
	if err != nil {
		t.Fatalf("writer after readers left: %v", err)
	}
	if _, err := rw2.TryRLock(ctx); !errors.Is(err, distkit.ErrNotAcquired) {
		t.Fatalf("reader while a writer holds: %v", err)
	}
	if _, err := rw2.TryLock(ctx); !errors.Is(err, distkit.ErrNotAcquired) {
		t.Fatalf("second writer: %v", err)
	}
	release(t, w)
	r3, err := rw2.TryRLockWithTimeout(ctx, time.Second)
	if err != nil {
		t.Fatalf("reader after the writer left: %v", err)
	}
	release(t, r3)
	m := newMutex(t, open(t, h), "other", lock.Options{Prefix: p})
	if g, err := m.TryLock(ctx); err != nil {
		t.Fatal(err)
	} else {
		release(t, g)
	}
}

func testRWWriterPreference(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	opts := lock.Options{Prefix: p, RetryInterval: 10 * time.Millisecond}
	readers := newRW(t, open(t, h), "res", opts)
	writer := newRW(t, open(t, h), "res", opts)
	r1, err := readers.RLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wg := make(chan *lock.Guard, 1)
	go func() {
		g, err := writer.Lock(ctx)
		if err != nil {
			t.Error(err)
		}
		wg <- g
	}()
	eventually(t, 2*time.Second, "a waiting writer holds back new readers", func() bool {
		g, err := readers.TryRLock(ctx)
		if err == nil {
			g.Release(ctx)
			return false
		}
		return errors.Is(err, distkit.ErrNotAcquired)
	})
	release(t, r1)
	var w *lock.Guard
	select {
	case w = <-wg:
	case <-time.After(5 * time.Second):
		t.Fatal("writer did not acquire after the reader left")
	}
	release(t, w)
	r2, err := readers.TryRLockWithTimeout(ctx, time.Second)
	if err != nil {
		t.Fatalf("reader after the writer: %v", err)
	}
	release(t, r2)
}

func testRWNotStarved(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	opts := lock.Options{Prefix: p, RetryInterval: 5 * time.Millisecond}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 { // overlapping readers: never a moment without one, absent writer preference
		rw := newRW(t, open(t, h), "res", opts)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				g, err := rw.TryRLockWithTimeout(ctx, 50*time.Millisecond)
				if err != nil {
					continue
				}
				time.Sleep(20 * time.Millisecond)
				g.Release(ctx)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	writer := newRW(t, open(t, h), "res", opts)
	start := time.Now()
	g, err := writer.TryLockWithTimeout(ctx, 3*time.Second)
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatalf("writer starved by a stream of readers: %v", err)
	}
	t.Logf("writer acquired after %v", time.Since(start))
	release(t, g)
}

func testRWCrashedReader(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	const ttl = 300 * time.Millisecond
	opts := lock.Options{Prefix: p, TTL: ttl, RetryInterval: 10 * time.Millisecond}
	crashing := h.NewBackend(t)
	crashed, err := newRW(t, crashing, "res", opts).RLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	alive, err := newRW(t, open(t, h), "res", opts).RLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	crashing.Close() // the first reader stops renewing
	writer := newRW(t, open(t, h), "res", opts)
	pass(t, h, ttl+200*time.Millisecond)
	if alive.State() != lock.Acquired {
		t.Fatalf("the live reader's lease was lost: %v", alive.State())
	}
	if g, err := writer.TryLock(ctx); !errors.Is(err, distkit.ErrNotAcquired) {
		// Exclusion is broken only if the reader still believes it holds:
		// a reader whose renewals were starved past its deadline (a loaded
		// machine) is told (Lost) and has nothing to exclude.
		if err != nil || alive.State() == lock.Acquired {
			t.Fatalf("writer while the live reader holds: %v (reader %v)", err, alive.State())
		}
		t.Logf("the live reader's renewals were starved past its deadline (%v); the writer got the lock legitimately", alive.State())
		release(t, g)
		crashed.Release(ctx)
		return
	}
	release(t, alive)
	w, err := writer.TryLockWithTimeout(ctx, 2*time.Second)
	if err != nil {
		t.Fatalf("writer after the live reader left (the crashed one expired): %v", err)
	}
	release(t, w)
	crashed.Release(ctx)
}

func testLockOptions(t *testing.T, h Harness) {
	b := open(t, h)
	for _, tc := range []struct {
		name string
		opts lock.Options
		want error
	}{
		{"short TTL", lock.Options{TTL: 50 * time.Millisecond}, distkit.ErrInvalidOption},
		{"negative retry", lock.Options{RetryInterval: -1}, distkit.ErrInvalidOption},
		{"bad owner", lock.Options{Owner: strings.Repeat("o", distkit.MaxKeyLen+1)}, distkit.ErrInvalidOption},
		{"bad prefix", lock.Options{Prefix: strings.Repeat("p", distkit.MaxKeyLen+1)}, distkit.ErrInvalidKey},
	} {
		if _, err := lock.NewMutex(b, "res", tc.opts); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if _, err := lock.NewRWMutex(b, "res", tc.opts); !errors.Is(err, tc.want) {
			t.Errorf("RW %s: %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, name := range []string{"", strings.Repeat("n", distkit.MaxKeyLen+1)} {
		if _, err := lock.NewMutex(b, name, lock.Options{}); !errors.Is(err, distkit.ErrInvalidKey) {
			t.Errorf("name %q: %v", name, err)
		}
	}
	if _, err := lock.NewMutex(nil, "res", lock.Options{}); !errors.Is(err, distkit.ErrInvalidOption) {
		t.Errorf("nil backend: %v", err)
	}
}

func testLockBackendDown(t *testing.T, h Harness) {
	ctx := context.Background()
	b := h.NewBackend(t)
	m := newMutex(t, b, "res", lock.Options{Prefix: prefix(t), TTL: 150 * time.Millisecond})
	g, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b.Close() // renewals now fail
	select {
	case <-g.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("a guard whose backend is gone did not report the loss")
	}
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := g.Release(cctx); err == nil {
		t.Fatal("Release with the backend down reported success")
	}
	// goleak (TestMain) proves the renewal goroutine ended.
}
