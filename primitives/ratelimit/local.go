package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// window is one key's sliding window in process: a ring of bucket counts
// with a running total, advanced lazily (amortised O(1) per decision).
type window struct {
	mu      sync.Mutex
	counts  []int64
	head    int64 // newest bucket index the ring has been advanced to
	total   int64
	sup     suppression
	lastUse atomic.Int64
}

func newWindow(nb int64) *window { return &window{counts: make([]int64, nb), head: math.MinInt64} }

// advance expires buckets older than the window ending at bucket cur.
func (w *window) advance(cur int64) {
	nb := int64(len(w.counts))
	if w.head == math.MinInt64 || cur-w.head >= nb {
		clear(w.counts)
		w.total = 0
		w.head = cur
		return
	}
	for b := w.head + 1; b <= cur; b++ {
		s := b % nb
		w.total -= w.counts[s]
		w.counts[s] = 0
	}
	if cur > w.head {
		w.head = cur
	}
}

func (w *window) add(cur, n int64) {
	w.counts[cur%int64(len(w.counts))] += n
	w.total += n
}

// retryAfter: when enough of the oldest buckets will have left for need
// units to be freed; -1 when they never will.
func (w *window) retryAfter(cur, nowMs, bucketMs int64, need float64) time.Duration {
	nb := int64(len(w.counts))
	freed := int64(0)
	for b := cur - nb + 1; b <= cur; b++ {
		freed += w.counts[b%nb]
		if float64(freed) >= need {
			return time.Duration((b+nb)*bucketMs-nowMs) * time.Millisecond
		}
	}
	return -1
}

// decide makes Local's decision for the window ending now.
func (w *window) decide(cfg *config, sup bool, rate float64, n int64, now time.Time) Decision {
	nowMs := now.UnixMilli()
	bucketMs := cfg.bucket.Milliseconds()
	cur := nowMs / bucketMs
	w.advance(cur)
	d, record := judge(cfg, sup, rate, n, w.total, &w.sup, now)
	if record {
		w.add(cur, n)
	}
	capacity := cfg.capacity(rate)
	switch {
	case !sup && !d.Allowed:
		d.RetryAfter = max(0, w.retryAfter(cur, nowMs, bucketMs, float64(w.total+n)-capacity))
	case sup && d.Suppression == 1:
		d.RetryAfter = max(0, w.retryAfter(cur, nowMs, bucketMs, float64(w.total)-capacity*cfg.hlf))
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

// close stops the loop, cancels the work in progress and waits for the
// loop to end, at most until ctx is done.
func (j *janitor) close(ctx context.Context) error {
	j.once.Do(func() {
		close(j.stop)
		j.cancel()
	})
	select {
	case <-j.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ratelimit: close: %w", ctx.Err())
	}
}

// Local is the in-process provider: no I/O, per-key locking only.
type Local struct {
	cfg  config
	keys *keyMap[window]
	jan  *janitor
}

// NewLocal returns a Local provider and starts its idle-key cleanup, which
// Close stops.
func NewLocal(opts Options) (*Local, error) {
	cfg, err := opts.config(FailClosed, false)
	if err != nil {
		return nil, err
	}
	l := &Local{cfg: cfg, keys: newKeyMap[window]()}
	l.jan = startJanitor(max(cfg.idle/2, 10*time.Millisecond), func(context.Context) {
		cutoff := l.cfg.clock.Now().Add(-l.cfg.idle).UnixNano()
		l.keys.sweep(func(w *window) bool { return w.lastUse.Load() < cutoff })
	})
	return l, nil
}

// Absolute returns the Absolute strategy on this provider.
func (l *Local) Absolute() *Absolute { return &Absolute{p: l} }

// Suppressed returns the Suppressed strategy on this provider.
func (l *Local) Suppressed() *Suppressed { return &Suppressed{p: l} }

func (l *Local) decide(_ context.Context, sup bool, key string, rate float64, n int64) (Decision, error) {
	now := l.cfg.clock.Now()
	w := l.keys.get(key, func() *window { return newWindow(l.cfg.nb) })
	w.lastUse.Store(now.UnixNano())
	w.mu.Lock()
	d := w.decide(&l.cfg, sup, rate, n, now)
	w.mu.Unlock()
	return d, nil
}

// Close stops the cleanup loop, waiting for it at most until ctx is done.
// Decisions keep working afterwards.
func (l *Local) Close(ctx context.Context) error { return l.jan.close(ctx) }
