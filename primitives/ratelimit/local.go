package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// window is one key's sliding window in process: the buckets that hold
// admissions still counted, oldest first, with a running total (amortised
// O(1) per decision). Its memory follows what the key holds (at most
// min(C, nb + 1) buckets), not the number of buckets in the window. It is
// the Go rendering of the window script's buckets.
type window struct {
	mu      sync.Mutex
	dead    bool          // dropped from the key map: decisions must look the key up again
	q       []bucketCount // ascending bucket, count > 0
	lastMs  int64         // latest time seen: the window's clock never runs back
	total   int64
	sup     suppression
	lastUse atomic.Int64 // clock time (ns) of the latest decision
}

type bucketCount struct{ b, n int64 }

const none = math.MinInt64

func newWindow() *window { return &window{lastMs: none} }

// advance expires the buckets that left the window at nowMs.
func (w *window) advance(nowMs, bucketMs, nb int64) (cur int64) {
	cur = nowMs / bucketMs
	oldest := (nowMs+1)/bucketMs - nb
	i := 0
	for i < len(w.q) && w.q[i].b < oldest {
		w.total -= w.q[i].n
		i++
	}
	if i == len(w.q) {
		w.q = w.q[:0] // reuse the array
	} else if i > 0 {
		w.q = w.q[i:] // an append that outgrows it copies only what is live
	}
	return cur
}

func (w *window) add(cur, n int64) {
	if l := len(w.q) - 1; l >= 0 && cur <= w.q[l].b {
		w.q[l].n += n // same bucket (a later one than cur only if the clock ran back: stricter)
	} else {
		w.q = append(w.q, bucketCount{cur, n})
	}
	w.total += n
}

// retryAfter is how long until need units have left the window: bucket b
// leaves at (b + nb + 1)·B − 1 ms.
func (w *window) retryAfter(nowMs, bucketMs, nb, need int64) time.Duration {
	freed := int64(0)
	for _, e := range w.q {
		freed += e.n
		if freed >= need {
			return time.Duration((e.b+nb+1)*bucketMs-1-nowMs) * time.Millisecond
		}
	}
	return 0
}

// empty reports whether nothing recorded is still in the window at nowMs.
func (w *window) empty(nowMs, bucketMs, nb int64) bool {
	return len(w.q) == 0 || w.total == 0 || (nowMs+1)/bucketMs-nb > w.q[len(w.q)-1].b
}

// decide makes Local's decision for the window ending now.
func (w *window) decide(cfg *config, sup bool, lim limits, n int64, now time.Time) Decision {
	nowMs := max(now.UnixMilli(), w.lastMs)
	w.lastMs = nowMs
	bucketMs := cfg.bucket.Milliseconds()
	cur := w.advance(nowMs, bucketMs, cfg.nb)
	if now.UnixMilli() == nowMs && now.Sub(time.UnixMilli(nowMs)) > 0 {
		// Within a millisecond: counted from the next one, so that the
		// bound holds for windows measured to the nanosecond (counted from
		// this one, an admission at 99.9 ms leaves with the bucket of 99 ms
		// while one 999.9 ms later still sees it gone).
		cur = (nowMs + 1) / bucketMs
	}
	before := w.total
	d, record := judge(cfg, sup, lim, n, before, &w.sup, now)
	if record {
		w.add(cur, n)
	}
	if !d.Allowed && n <= d.Limit && (!sup || d.Suppression == 1) {
		// a rejection that is not probabilistic: when would it fit?
		d.RetryAfter = w.retryAfter(nowMs, bucketMs, cfg.nb, w.total+n-d.Limit)
	}
	return d
}

// keyMap is a sharded map of per-key state: no global lock.
type keyMap[T any] struct {
	seed   maphash.Seed
	shards [64]struct {
		mu sync.RWMutex
		m  map[string]*T
	}
}

func newKeyMap[T any]() *keyMap[T] {
	km := &keyMap[T]{seed: maphash.MakeSeed()}
	for i := range km.shards {
		km.shards[i].m = map[string]*T{}
	}
	return km
}

func (km *keyMap[T]) get(key string, mk func() *T) *T {
	sh := &km.shards[maphash.String(km.seed, key)%64]
	sh.mu.RLock()
	v := sh.m[key]
	sh.mu.RUnlock()
	if v != nil {
		return v
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if v = sh.m[key]; v == nil {
		v = mk()
		sh.m[key] = v
	}
	return v
}

// sweep deletes entries for which drop returns true.
func (km *keyMap[T]) sweep(drop func(*T) bool) {
	for i := range km.shards {
		sh := &km.shards[i]
		sh.mu.Lock()
		for k, v := range sh.m {
			if drop(v) {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

// each calls f for every entry (snapshot).
func (km *keyMap[T]) each(f func(string, *T)) {
	for i := range km.shards {
		sh := &km.shards[i]
		sh.mu.RLock()
		type kv struct {
			k string
			v *T
		}
		items := make([]kv, 0, len(sh.m))
		for k, v := range sh.m {
			items = append(items, kv{k, v})
		}
		sh.mu.RUnlock()
		for _, it := range items {
			f(it.k, it.v)
		}
	}
}

// janitor runs f every interval until close. f's I/O runs under the
// context it is given, which close cancels.
type janitor struct {
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	cancel context.CancelFunc
}

func startJanitor(interval time.Duration, f func(ctx context.Context)) *janitor {
	ctx, cancel := context.WithCancel(context.Background())
	j := &janitor{stop: make(chan struct{}), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(j.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-j.stop:
				return
			case <-t.C:
				f(ctx)
			}
		}
	}()
	return j
}

// stopWhenCollected ends j's loop once owner is garbage (nobody called
// Close); j's work must not reference owner.
func stopWhenCollected[T any](owner *T, j *janitor) {
	runtime.AddCleanup(owner, (*janitor).stopLoop, j)
}

// stopLoop stops the loop and cancels the work in progress.
func (j *janitor) stopLoop() {
	j.once.Do(func() {
		close(j.stop)
		j.cancel()
	})
}

// close stops the loop, cancels the work in progress and waits for the
// loop to end, at most until ctx is done.
func (j *janitor) close(ctx context.Context) error {
	j.stopLoop()
	select {
	case <-j.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ratelimit: close: %w", ctx.Err())
	}
}

// Local is the in-process provider: no I/O, per-key locking only.
type Local struct {
	cfg    config
	keys   *keyMap[window]
	jan    *janitor
	closed atomic.Bool
}

// NewLocal returns a Local provider and starts its idle-key cleanup, which
// Close stops (or the garbage collector, once l is unreachable).
func NewLocal(opts Options) (*Local, error) {
	cfg, err := opts.config(FailClosed, false)
	if err != nil {
		return nil, err
	}
	l := &Local{cfg: cfg, keys: newKeyMap[window]()}
	bucketMs := cfg.bucket.Milliseconds()
	keys := l.keys // the loop must not hold l: it ends when l is collected
	l.jan = startJanitor(max(cfg.idle/2, 10*time.Millisecond), func(context.Context) {
		now := cfg.clock.Now()
		cutoff := now.Add(-cfg.idle).UnixNano()
		keys.sweep(func(w *window) bool {
			if w.lastUse.Load() >= cutoff {
				return false
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if !w.empty(max(now.UnixMilli(), w.lastMs), bucketMs, cfg.nb) {
				return false // still holds admissions the window counts
			}
			w.dead = true
			return true
		})
	})
	stopWhenCollected(l, l.jan)
	return l, nil
}

// Absolute returns the Absolute strategy on this provider.
func (l *Local) Absolute() *Absolute { return &Absolute{p: l} }

// Suppressed returns the Suppressed strategy on this provider.
func (l *Local) Suppressed() *Suppressed { return &Suppressed{p: l} }

func (l *Local) decide(_ context.Context, sup bool, key string, rate float64, n int64) (Decision, error) {
	if l.closed.Load() {
		return Decision{}, errClosed(key)
	}
	lim, err := l.cfg.limitsFor(rate)
	if err != nil {
		return Decision{}, err
	}
	now := l.cfg.clock.Now()
	for {
		w := l.keys.get(key, func() *window { return newWindow() })
		w.lastUse.Store(now.UnixNano())
		w.mu.Lock()
		if w.dead { // swept between the lookup and the lock: it was empty
			w.mu.Unlock()
			continue
		}
		// The decision's time is read under the lock: decisions on a key
		// then take effect in the order of their times, and At is when
		// this one did (not before a wait for the lock).
		d := w.decide(&l.cfg, sup, lim, n, l.cfg.clock.Now())
		w.mu.Unlock()
		return d, nil
	}
}

// Close stops the cleanup loop, waiting for it at most until ctx is done
// (then it returns ctx's error; the loop still ends on its own). Decisions
// after Close return an error wrapping distkit.ErrClosed.
func (l *Local) Close(ctx context.Context) error {
	l.closed.Store(true)
	return l.jan.close(ctx)
}
