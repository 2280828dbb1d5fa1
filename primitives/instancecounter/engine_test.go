package instancecounter_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/icscript"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

func newLax(t *testing.T, b backend.Backend, opts instancecounter.Options) *instancecounter.Lax {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = "t"
	}
	l, err := instancecounter.NewLax(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l.Close(ctx)
	})
	return l
}

func newStrict(t *testing.T, b backend.Backend, id string) *instancecounter.Strict {
	t.Helper()
	s, err := instancecounter.NewStrict(b, instancecounter.Options{Prefix: "t", InstanceID: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// One key whose delta the server refuses (its cumulative value would
// overflow) is reported on that key and set aside; the other keys flush,
// and the key recovers when the cause goes away. (Before: the flush
// script failed the whole batch, and the key's error blocked every key.)
func TestLaxKeyErrorIsolated(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	other := newStrict(t, b.Connect(), "other")
	if _, _, err := other.Set(ctx, "big", math.MaxInt64-5); err != nil {
		t.Fatal(err)
	}
	l := newLax(t, b.Connect(), instancecounter.Options{InstanceID: "lax", FlushInterval: time.Hour})
	if _, _, err := l.Get(ctx, "a"); err != nil { // registered: the flush below is no comeback
		t.Fatal(err)
	}
	l.Inc(ctx, "a", 1)
	l.Inc(ctx, "big", 10)
	l.Inc(ctx, "z", 2)
	err := l.Flush(ctx)
	if !errors.Is(err, distkit.ErrOverflow) {
		t.Fatalf("Flush: %v; want an error matching ErrOverflow", err)
	}
	for key, want := range map[string]int64{"a": 1, "z": 2} {
		if c, _, err := other.Get(ctx, key); err != nil || c != want {
			t.Fatalf("cumulative %s = %d, %v; want %d: one key's refusal held back the others", key, c, err, want)
		}
	}
	if got := fmt.Sprint(l.Pending()); got != "map[big:10]" {
		t.Fatalf("Pending = %s, want map[big:10]", got)
	}
	if f := l.Failed(); len(f) != 1 || !errors.Is(f["big"], distkit.ErrOverflow) {
		t.Fatalf("Failed = %v", f)
	}
	var ue *instancecounter.UnflushedError
	if !errors.As(err, &ue) || ue.Pending["big"] != 10 {
		t.Fatalf("Flush error %v is not an *UnflushedError naming big", err)
	}
	// The other keys keep flushing while big is set aside.
	l.Inc(ctx, "a", 1)
	if err := l.Flush(ctx); !errors.Is(err, distkit.ErrOverflow) {
		t.Fatalf("second Flush: %v", err)
	}
	if c, _, _ := other.Get(ctx, "a"); c != 2 {
		t.Fatalf("cumulative a = %d, want 2", c)
	}
	// The cause goes away: the key flushes.
	if _, _, err := other.Dec(ctx, "big", 100); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatalf("Flush after the cause went away: %v", err)
	}
	if c, m, err := other.Get(ctx, "big"); err != nil || c != math.MaxInt64-95 || m != math.MaxInt64-105 {
		t.Fatalf("big = %d (other's slice %d), %v", c, m, err)
	}
	if c, m, err := l.Get(ctx, "big"); err != nil || c != math.MaxInt64-95 || m != 10 {
		t.Fatalf("Lax Get big = %d, %d, %v; want %d, 10", c, m, err, int64(math.MaxInt64-95))
	}
	if len(l.Pending()) != 0 || len(l.Failed()) != 0 {
		t.Fatalf("Pending %v, Failed %v after recovery", l.Pending(), l.Failed())
	}
}

// allocBytes returns the bytes f allocates.
func allocBytes(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// The cost of a new key and of a flush does not grow with the number of
// idle keys the Lax holds. (Before: each new key copied the map of every
// key ever used, and each flush scanned it.)
func TestLaxCostIndependentOfIdleKeys(t *testing.T) {
	ctx := context.Background()
	type cost struct {
		newKey uint64        // bytes allocated by the first Inc of a key
		flush  time.Duration // median of Inc + Flush of one key
	}
	measure := func(idle int) cost {
		l := newLax(t, memory.New(memory.Options{}), instancecounter.Options{InstanceID: "lax", FlushInterval: time.Hour, IdleAfter: time.Hour})
		for i := range idle {
			l.Inc(ctx, fmt.Sprint("idle-", i), 1)
		}
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		keys := make([]string, 64)
		for i := range keys {
			keys[i] = fmt.Sprint("new-", i)
		}
		var c cost
		c.newKey = allocBytes(func() {
			for _, k := range keys {
				l.Inc(ctx, k, 1)
			}
		}) / uint64(len(keys))
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		ds := make([]time.Duration, 41)
		for i := range ds {
			start := time.Now()
			l.Inc(ctx, "hot", 1)
			if err := l.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			ds[i] = time.Since(start)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		c.flush = ds[len(ds)/2]
		return c
	}
	small, large := measure(100), measure(20_000)
	t.Logf("100 idle keys: %d B per new key, flush %v; 20 000 idle keys: %d B per new key, flush %v",
		small.newKey, small.flush, large.newKey, large.flush)
	if large.newKey > 4096 {
		t.Errorf("a new key allocates %d B with 20 000 idle keys (%d B with 100)", large.newKey, small.newKey)
	}
	if large.flush > 10*small.flush+time.Millisecond {
		t.Errorf("flushing one key takes %v among 20 000 idle keys, %v among 100", large.flush, small.flush)
	}
}

func heapAlloc() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// Keys whose slice went back to 0 leave the Lax after IdleAfter and its
// memory goes back to where it was; a key with a slice stays, and a
// comeback still contributes it. (Before: every key ever used stayed.)
func TestLaxIdleKeysEvicted(t *testing.T) {
	ctx := context.Background()
	const idleAfter = 500 * time.Millisecond
	b := memory.New(memory.Options{})
	l := newLax(t, b.Connect(), instancecounter.Options{InstanceID: "lax", FlushInterval: 5 * time.Millisecond,
		IdleAfter: idleAfter, DeadAfter: time.Minute})
	const n = 10_000
	// tracked: the keys just used are still tracked, when their use took
	// well under IdleAfter (on a loaded machine it may not).
	tracked := func(since time.Time) {
		t.Helper()
		if got := l.Tracked(); time.Since(since) < idleAfter/2 && got < n/2 {
			t.Fatalf("Tracked = %d right after use of %d keys", got, n+1)
		}
	}
	waitEvicted := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for l.Tracked() > 1 {
			if time.Now().After(deadline) {
				t.Fatalf("Tracked = %d: idle keys with a zero slice were not evicted", l.Tracked())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Connections opened and closed: every slice back to 0.
	used := time.Now()
	for i := range n {
		l.Inc(ctx, fmt.Sprint("conn-", i), 1)
	}
	l.Inc(ctx, "kept", 5)
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		l.Dec(ctx, fmt.Sprint("conn-", i), 1)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tracked(used) // some may have gone already
	waitEvicted()
	// The same keys again (the backend holds their data already): the
	// Lax's own memory comes and goes.
	base := heapAlloc()
	used = time.Now()
	for i := range n {
		k := fmt.Sprint("conn-", i)
		l.Inc(ctx, k, 1)
		l.Dec(ctx, k, 1)
	}
	tracked(used)
	peak := heapAlloc()
	waitEvicted()
	after := heapAlloc()
	t.Logf("heap: %d KiB before, %d KiB with %d keys, %d KiB after eviction", base>>10, peak>>10, n, after>>10)
	if peak-base < n*50 {
		t.Fatalf("heap grew by %d KiB only with %d keys", (peak-base)>>10, n)
	}
	if after-base > (peak-base)/5 {
		t.Errorf("heap %d KiB above the start after eviction (%d KiB with the keys)", (after-base)>>10, (peak-base)>>10)
	}
	// The kept slice survives a data loss: the comeback contributes it.
	b.FlushAll()
	reader := newStrict(t, b.Connect(), "reader")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, err := l.Get(ctx, "kept"); err != nil { // Lax's comeback, through an op
			t.Fatal(err)
		}
		c, _, err := reader.Get(ctx, "kept")
		if err == nil && c == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kept = %d, %v after the comeback, want 5", c, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rejoinRecorder records the number of keys each rejoin reports.
type rejoinRecorder struct {
	backend.Backend
	mu   sync.Mutex
	keys []int
}

func (r *rejoinRecorder) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	if s.Name() == icscript.Rejoin.Name() {
		r.mu.Lock()
		r.keys = append(r.keys, (len(args)-7)/6)
		r.mu.Unlock()
	}
	return r.Backend.EvalScript(ctx, s, keys, args...)
}

// A comeback reports only the keys with something to report (a slice, a
// Set or Del newer than the last Clear), not every key ever used. (Before:
// after a Clear every key carried an epoch and was sent.)
func TestLaxRejoinSendsOnlyNonZero(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	rec := &rejoinRecorder{Backend: b.Connect()}
	l := newLax(t, rec, instancecounter.Options{InstanceID: "lax", FlushInterval: time.Hour, IdleAfter: time.Hour, DeadAfter: time.Minute})
	if err := l.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		k := fmt.Sprint("k", i)
		l.Inc(ctx, k, 1)
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		l.Dec(ctx, k, 1)
	}
	l.Inc(ctx, "a", 3)
	l.Inc(ctx, "b", 4)
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	b.FlushAll()
	rec.mu.Lock()
	rec.keys = nil
	rec.mu.Unlock()
	if _, _, err := l.Get(ctx, "a"); err != nil { // finds the instance absent: rejoins
		t.Fatal(err)
	}
	rec.mu.Lock()
	got := fmt.Sprint(rec.keys)
	rec.mu.Unlock()
	if got != "[2]" {
		t.Fatalf("rejoins reported %s keys, want one rejoin with the 2 keys that have a slice", got)
	}
	reader := newStrict(t, b.Connect(), "reader")
	for k, want := range map[string]int64{"a": 3, "b": 4, "k7": 0} {
		if c, _, err := reader.Get(ctx, k); err != nil || c != want {
			t.Fatalf("%s = %d, %v after the comeback; want %d", k, c, err, want)
		}
	}
}

// Keys that go idle and come back while Incs race with their eviction:
// every accepted delta reaches the server once, and after a data loss the
// comeback contributes every slice (an entry evicted while a reply was on
// its way passes what it learnt to the key's current entry).
func TestLaxEvictionRacingIncsAndComeback(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l := newLax(t, b.Connect(), instancecounter.Options{InstanceID: "lax", FlushInterval: time.Millisecond,
		IdleAfter: time.Millisecond, DeadAfter: time.Minute})
	if _, _, err := l.Get(ctx, "k0"); err != nil { // registered
		t.Fatal(err)
	}
	const keys = 16
	var mu sync.Mutex
	want := map[string]int64{}
	var wg sync.WaitGroup
	deadline := time.Now().Add(300 * time.Millisecond)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				k := fmt.Sprint("k", (i*7+w)%keys)
				d := int64(1)
				if i%3 == 0 {
					d = -1 // slices go back to 0 now and then: evictable
				}
				if _, _, err := l.Inc(ctx, k, d); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want[k] += d
				mu.Unlock()
				if i%50 == 0 {
					time.Sleep(2 * time.Millisecond) // let keys go idle
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	reader := newStrict(t, b.Connect(), "reader")
	check := func(when string) {
		t.Helper()
		for i := range keys {
			k := fmt.Sprint("k", i)
			if c, _, err := reader.Get(ctx, k); err != nil || c != want[k] {
				t.Fatalf("%s: %s = %d, %v; accepted %d", when, k, c, err, want[k])
			}
		}
	}
	check("after the flush")
	b.FlushAll()
	if _, _, err := l.Get(ctx, "k0"); err != nil { // the comeback
		t.Fatal(err)
	}
	check("after the comeback")
}
