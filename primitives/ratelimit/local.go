package ratelimit

import (
	"cmp"
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit-go/distkit"
)

// buckets are counts in process that leave a sliding window with their
// bucket: the buckets that hold something still counted, oldest first,
// with a running total (amortised O(1) per operation). Their memory
// follows what they hold (at most min(N, nb + 1) buckets), not the number
// of buckets in the window. They are the Go rendering of the window
// script's buckets: Local's windows, and a Hybrid key's increments not yet
// pushed.
type buckets struct {
	g      geometry      // the geometry the buckets are counted in
	q      []bucketCount // ascending bucket, count > 0
	lastMs int64         // latest time seen: the clock never runs back
	total  int64
}

// window is one key's sliding window in process.
type window struct {
	mu   sync.Mutex
	dead bool // dropped from the key map: decisions must look the key up again
	buckets
	sup     suppression
	lastUse atomic.Int64 // clock time (ns) of the latest decision
}

type bucketCount struct{ b, n int64 }

const none = math.MinInt64

func newWindow(g geometry) *window { return &window{buckets: buckets{g: g, lastMs: none}} }

// clock returns the window's time for now, which never runs back.
func (w *buckets) clock(now time.Time) int64 {
	w.lastMs = max(now.UnixMilli(), w.lastMs)
	return w.lastMs
}

// bucketFor is the bucket a unit recorded at now (window time nowMs) is
// counted in: a request made within a millisecond is counted from the
// next one, so that the bound holds for windows measured to the
// nanosecond (counted from this one, an admission at 99.9 ms leaves with
// the bucket of 99 ms while one 999.9 ms later still sees it gone).
func (w *buckets) bucketFor(now time.Time, nowMs int64) int64 {
	if now.UnixMilli() == nowMs && now.Sub(time.UnixMilli(nowMs)) > 0 {
		return (nowMs + 1) / w.g.bucketMs
	}
	return nowMs / w.g.bucketMs
}

// advance expires the buckets that left the window at nowMs.
func (w *buckets) advance(nowMs int64) {
	oldest := (nowMs+1)/w.g.bucketMs - w.g.nb
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
}

// regeo re-dates the window to geometry g when it was kept with another:
// what the old geometry still counts moves into the current bucket (as
// the script does).
func (w *buckets) regeo(g geometry, nowMs int64) {
	if w.g == g {
		return
	}
	if w.g == (geometry{}) { // nothing counted yet
		w.g = g
		return
	}
	w.advance(nowMs)
	live := w.total
	w.g, w.q, w.total = g, w.q[:0], 0
	if live > 0 {
		w.add(nowMs/g.bucketMs, live)
	}
}

// at prepares the window for a write at nowMs under g.
func (w *buckets) at(g geometry, nowMs int64) {
	w.regeo(g, nowMs)
	w.advance(nowMs)
}

func (w *buckets) add(cur, n int64) {
	if l := len(w.q) - 1; l >= 0 && cur <= w.q[l].b {
		w.q[l].n += n // same bucket (a later one than cur only if the clock ran back: stricter)
	} else {
		w.q = append(w.q, bucketCount{cur, n})
	}
	w.total += n
}

// merge adds q, buckets counted under geometry g (ascending), to w at
// nowMs. Under another geometry what q still counts moves into the
// current bucket (stricter, as regeo).
func (w *buckets) merge(g geometry, q []bucketCount, nowMs int64) {
	if len(q) == 0 {
		return
	}
	if w.g == (geometry{}) {
		w.g = g
	}
	if g != w.g {
		o := buckets{g: g, q: q}
		for _, e := range q {
			o.total += e.n
		}
		o.advance(nowMs)
		if o.total > 0 {
			w.add(nowMs/w.g.bucketMs, o.total)
		}
		return
	}
	all := append(slices.Clone(q), w.q...)
	slices.SortStableFunc(all, func(x, y bucketCount) int { return cmp.Compare(x.b, y.b) })
	w.q = w.q[:0]
	w.total = 0
	for _, e := range all {
		w.add(e.b, e.n)
	}
}

func (w *buckets) leave(b, nowMs int64) time.Duration {
	return time.Duration((b+w.g.nb+1)*w.g.bucketMs-1-nowMs) * time.Millisecond
}

// retryAfter is how long until need units have left the window: bucket b
// leaves at (b + nb + 1)·B − 1 ms.
func (w *buckets) retryAfter(nowMs, need int64) time.Duration {
	freed := int64(0)
	for _, e := range w.q {
		freed += e.n
		if freed >= need {
			return w.leave(e.b, nowMs)
		}
	}
	return 0
}

// releaseAfter is how long until the oldest bucket holding anything
// leaves; 0 when the window is empty.
func (w *buckets) releaseAfter(nowMs int64) time.Duration {
	if w.total <= 0 || len(w.q) == 0 {
		return 0
	}
	return w.leave(w.q[0].b, nowMs)
}

// empty reports whether nothing recorded is still in the window at nowMs.
func (w *buckets) empty(nowMs int64) bool {
	return len(w.q) == 0 || w.total == 0 || (nowMs+1)/w.g.bucketMs-w.g.nb > w.q[len(w.q)-1].b
}

// decide makes Local's decision for the window ending now.
func (w *window) decide(cfg *config, sup bool, lim limits, g geometry, n int64, now time.Time) Decision {
	nowMs := w.clock(now)
	w.at(g, nowMs)
	d, record := judge(cfg, sup, lim, n, w.total, &w.sup, now)
	if record {
		w.add(w.bucketFor(now, nowMs), n)
	}
	if !d.Allowed && n <= d.Limit && (!sup || d.Suppression == 1) {
		// a rejection that is not probabilistic: when would it fit?
		d.RetryAfter = w.retryAfter(nowMs, w.total+n-d.Limit)
	}
	d.ReleaseAfter = w.releaseAfter(nowMs)
	return d
}

// peek is the window's State under g at now, changing nothing a decision
// could see (a window kept with another geometry is read as re-dated).
func (w *window) peek(sup bool, lim limits, g geometry, now time.Time) State {
	nowMs := w.clock(now)
	if w.g != g { // read a re-dated copy
		v := &window{buckets: buckets{g: w.g, q: slices.Clone(w.q), lastMs: w.lastMs, total: w.total}}
		v.regeo(g, nowMs)
		w = v
	}
	w.advance(nowMs)
	st := peekState(sup, lim, w.total, now)
	if w.total+1 > st.Limit {
		st.RetryAfter = w.retryAfter(nowMs, w.total+1-st.Limit)
	}
	st.ReleaseAfter = w.releaseAfter(nowMs)
	return st
}

// set is SetIf on the window (locked).
func (w *window) set(g geometry, cmp distkit.Comparator, value int64, h History, now time.Time) (cur, prev int64) {
	nowMs := w.clock(now)
	w.at(g, nowMs)
	prev = w.total
	if !cmp.Matches(prev) {
		return prev, prev
	}
	switch {
	case h == ReplaceHistory:
		w.q, w.total = w.q[:0], 0
		if value > 0 {
			w.add(w.bucketFor(now, nowMs), value)
		}
	case value > w.total:
		w.add(w.bucketFor(now, nowMs), value-w.total)
	case value < w.total:
		remove := w.total - value
		for i := len(w.q) - 1; i >= 0 && remove > 0; i-- {
			take := min(w.q[i].n, remove)
			w.q[i].n -= take
			w.total -= take
			remove -= take
		}
		w.q = slices.DeleteFunc(w.q, func(e bucketCount) bool { return e.n == 0 })
	}
	return w.total, prev
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

// lookup returns key's entry, nil when there is none.
func (km *keyMap[T]) lookup(key string) *T {
	sh := &km.shards[maphash.String(km.seed, key)%64]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.m[key]
}

// remove deletes key's entry if it is v.
func (km *keyMap[T]) remove(key string, v *T) {
	sh := &km.shards[maphash.String(km.seed, key)%64]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m[key] == v {
		delete(sh.m, key)
	}
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
	cfg.obs = newRLObs(opts, "local", cfg.prefix)
	l := &Local{cfg: cfg, keys: newKeyMap[window]()}
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
			if !w.empty(max(now.UnixMilli(), w.lastMs)) {
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

func (l *Local) conf() *config { return &l.cfg }

// locked runs f on key's window, locked, creating it when create is set;
// f gets nil when there is none. The time f gets is read under the lock:
// operations on a key then take effect in the order of their times, and a
// decision's At is when it did (not before a wait for the lock).
func (l *Local) locked(key string, g geometry, create bool, f func(w *window, now time.Time)) {
	for {
		var w *window
		if create {
			w = l.keys.get(key, func() *window { return newWindow(g) })
		} else if w = l.keys.lookup(key); w == nil {
			f(nil, l.cfg.clock.Now())
			return
		}
		w.lastUse.Store(l.cfg.clock.Now().UnixNano())
		w.mu.Lock()
		if w.dead { // swept or reset between the lookup and the lock
			w.mu.Unlock()
			continue
		}
		f(w, l.cfg.clock.Now())
		w.mu.Unlock()
		return
	}
}

func (l *Local) decide(_ context.Context, sup bool, key string, lim limits, g geometry, n int64) (d Decision, err error) {
	if l.closed.Load() {
		return Decision{}, errClosed(key)
	}
	l.locked(key, g, true, func(w *window, now time.Time) { d = w.decide(&l.cfg, sup, lim, g, n, now) })
	return d, nil
}

func (l *Local) peek(_ context.Context, sup bool, key string, lim limits, g geometry) (st State, err error) {
	if l.closed.Load() {
		return State{}, errClosed(key)
	}
	l.locked(key, g, false, func(w *window, now time.Time) {
		if w == nil {
			st = peekState(sup, lim, 0, now)
			return
		}
		st = w.peek(sup, lim, g, now)
	})
	return st, nil
}

// Reset empties key's window: its next decision starts from nothing. The
// error is non-nil only for an invalid key or a closed provider.
func (l *Local) Reset(_ context.Context, key string) error {
	if err := distkit.ValidateKey("key", key); err != nil {
		return fmt.Errorf("ratelimit: %w", err)
	}
	if l.closed.Load() {
		return errClosed(key)
	}
	if w := l.keys.lookup(key); w != nil {
		w.mu.Lock()
		w.dead = true
		w.mu.Unlock()
		l.keys.remove(key, w)
	}
	return nil
}

// SetIf sets key's window count (what Peek reports as Count) to value
// when cmp matches the current count, keeping or replacing the buckets it
// holds (History), and returns the count after and before: (value, prev)
// on a match, (prev, prev) otherwise. limit gives the window (only its
// Period matters here). value may exceed limit.N (the key is then
// rejected until enough has left). Errors: invalid input
// (ErrInvalidKey, ErrInvalidOption: an invalid Limit or comparator, a
// value outside 0 to MaxCount) or a closed provider.
func (l *Local) SetIf(_ context.Context, key string, limit Limit, cmp distkit.Comparator, value int64, h History) (cur, prev int64, err error) {
	if err := checkSet(key, limit, cmp, value, h); err != nil {
		return 0, 0, err
	}
	if l.closed.Load() {
		return 0, 0, errClosed(key)
	}
	g := geometryOf(limit, l.cfg.buckets)
	l.locked(key, g, true, func(w *window, now time.Time) { cur, prev = w.set(g, cmp, value, h, now) })
	return cur, prev, nil
}

// Close stops the cleanup loop, waiting for it at most until ctx is done
// (then it returns ctx's error; the loop still ends on its own). Calls
// after Close return an error wrapping distkit.ErrClosed.
func (l *Local) Close(ctx context.Context) error {
	l.closed.Store(true)
	return l.jan.close(ctx)
}
