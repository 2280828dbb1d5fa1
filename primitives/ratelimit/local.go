package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit-go/distkit"
)

// window is one key's sliding window in process: a ring of nb + 1 bucket
// counts with a running total, advanced lazily (amortised O(1) per
// decision). It is the Go rendering of the window script's buckets.
type window struct {
	mu      sync.Mutex
	dead    bool // dropped from the key map: decisions must look the key up again
	g       geometry
	counts  []int64 // bucket b at b mod (nb + 1)
	head    int64   // newest bucket the ring has been advanced to; none: empty
	low     int64   // oldest bucket still counted in total
	lastMs  int64   // latest time seen: the window's clock never runs back
	total   int64
	sup     suppression
	lastUse atomic.Int64 // clock time (ns) of the latest decision
}

const none = math.MinInt64

func newWindow(g geometry) *window {
	return &window{g: g, counts: make([]int64, g.nb+1), head: none, lastMs: none}
}

func (w *window) slot(b int64) int64 {
	n := int64(len(w.counts))
	return ((b % n) + n) % n
}

// clock returns the window's time for now, which never runs back.
func (w *window) clock(now time.Time) int64 {
	w.lastMs = max(now.UnixMilli(), w.lastMs)
	return w.lastMs
}

// advance expires the buckets that left the window at nowMs.
func (w *window) advance(nowMs int64) (cur int64) {
	cur = nowMs / w.g.bucketMs
	oldest := (nowMs+1)/w.g.bucketMs - w.g.nb
	if w.head == none || oldest > w.head {
		clear(w.counts)
		w.total, w.head, w.low = 0, cur, oldest
		return cur
	}
	for b := w.low; b < oldest; b++ { // at most nb + 1 buckets: low ≥ head − nb
		s := w.slot(b)
		w.total -= w.counts[s]
		w.counts[s] = 0
	}
	w.low = max(w.low, oldest)
	w.head = max(w.head, cur) // slots of buckets after head hold expired ones, already zero
	return cur
}

// regeo re-dates the window to geometry g when it was kept with another:
// what the old geometry still counts moves into the current bucket (as
// the script does).
func (w *window) regeo(g geometry, nowMs int64) {
	if w.g == g {
		return
	}
	w.advance(nowMs)
	live := w.total
	w.g, w.counts, w.head, w.total = g, make([]int64, g.nb+1), none, 0
	if live > 0 {
		w.add(w.advance(nowMs), live)
	}
}

// at prepares the window for a write at nowMs under g and returns the
// current bucket.
func (w *window) at(g geometry, nowMs int64) int64 {
	w.regeo(g, nowMs)
	return w.advance(nowMs)
}

func (w *window) add(cur, n int64) {
	w.counts[w.slot(cur)] += n
	w.total += n
}

func (w *window) leave(b, nowMs int64) time.Duration {
	return time.Duration((b+w.g.nb+1)*w.g.bucketMs-1-nowMs) * time.Millisecond
}

// retryAfter is how long until need units have left the window: bucket b
// leaves at (b + nb + 1)·B − 1 ms.
func (w *window) retryAfter(nowMs, need int64) time.Duration {
	freed := int64(0)
	for b := w.low; b <= w.head; b++ {
		freed += w.counts[w.slot(b)]
		if freed >= need {
			return w.leave(b, nowMs)
		}
	}
	return 0
}

// releaseAfter is how long until the oldest bucket holding anything
// leaves; 0 when the window is empty.
func (w *window) releaseAfter(nowMs int64) time.Duration {
	if w.total <= 0 {
		return 0
	}
	for b := w.low; b <= w.head; b++ {
		if w.counts[w.slot(b)] > 0 {
			return w.leave(b, nowMs)
		}
	}
	return 0
}

// empty reports whether nothing recorded is still in the window at nowMs.
func (w *window) empty(nowMs int64) bool {
	return w.head == none || w.total == 0 || (nowMs+1)/w.g.bucketMs-w.g.nb > w.head
}

// decide makes Local's decision for the window ending now.
func (w *window) decide(cfg *config, sup bool, lim limits, g geometry, n int64, now time.Time) Decision {
	nowMs := w.clock(now)
	cur := w.at(g, nowMs)
	d, record := judge(cfg, sup, lim, n, w.total, &w.sup, now)
	if record {
		w.add(cur, n)
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
		v := &window{g: w.g, counts: slices.Clone(w.counts), head: w.head, low: w.low, lastMs: w.lastMs, total: w.total}
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
	c := w.at(g, nowMs)
	prev = w.total
	if !cmp.Matches(prev) {
		return prev, prev
	}
	switch {
	case h == ReplaceHistory:
		clear(w.counts)
		w.total, w.head, w.low = 0, c, (nowMs+1)/g.bucketMs-g.nb
		w.add(c, value)
	case value > w.total:
		w.add(c, value-w.total)
	case value < w.total:
		remove := w.total - value
		for b := w.head; b >= w.low && remove > 0; b-- {
			s := w.slot(b)
			take := min(w.counts[s], remove)
			w.counts[s] -= take
			w.total -= take
			remove -= take
		}
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
	cfg    config
	keys   *keyMap[window]
	jan    *janitor
	closed atomic.Bool
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
		now := l.cfg.clock.Now()
		cutoff := now.Add(-l.cfg.idle).UnixNano()
		l.keys.sweep(func(w *window) bool {
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
	return l, nil
}

// Absolute returns the Absolute strategy on this provider.
func (l *Local) Absolute() *Absolute { return &Absolute{p: l} }

// Suppressed returns the Suppressed strategy on this provider.
func (l *Local) Suppressed() *Suppressed { return &Suppressed{p: l} }

func (l *Local) conf() *config { return &l.cfg }

// locked runs f on key's window, locked, creating it when create is set;
// f gets nil when there is none.
func (l *Local) locked(key string, g geometry, create bool, now time.Time, f func(w *window)) {
	for {
		var w *window
		if create {
			w = l.keys.get(key, func() *window { return newWindow(g) })
		} else if w = l.keys.lookup(key); w == nil {
			f(nil)
			return
		}
		w.lastUse.Store(now.UnixNano())
		w.mu.Lock()
		if w.dead { // swept or reset between the lookup and the lock
			w.mu.Unlock()
			continue
		}
		f(w)
		w.mu.Unlock()
		return
	}
}

func (l *Local) decide(_ context.Context, sup bool, key string, lim limits, g geometry, n int64) (d Decision, err error) {
	if l.closed.Load() {
		return Decision{}, errClosed(key)
	}
	now := l.cfg.clock.Now()
	l.locked(key, g, true, now, func(w *window) { d = w.decide(&l.cfg, sup, lim, g, n, now) })
	return d, nil
}

func (l *Local) peek(_ context.Context, sup bool, key string, lim limits, g geometry) (st State, err error) {
	if l.closed.Load() {
		return State{}, errClosed(key)
	}
	now := l.cfg.clock.Now()
	l.locked(key, g, false, now, func(w *window) {
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
// (ErrInvalidKey, ErrInvalidOption: an invalid Limit, value outside 0 to
// MaxCount) or a closed provider.
func (l *Local) SetIf(_ context.Context, key string, limit Limit, cmp distkit.Comparator, value int64, h History) (cur, prev int64, err error) {
	if err := checkSet(key, limit, value, h); err != nil {
		return 0, 0, err
	}
	if l.closed.Load() {
		return 0, 0, errClosed(key)
	}
	g := geometryOf(limit, l.cfg.buckets)
	now := l.cfg.clock.Now()
	l.locked(key, g, true, now, func(w *window) { cur, prev = w.set(g, cmp, value, h, now) })
	return cur, prev, nil
}

// Close stops the cleanup loop, waiting for it at most until ctx is done
// (then it returns ctx's error; the loop still ends on its own). Calls
// after Close return an error wrapping distkit.ErrClosed.
func (l *Local) Close(ctx context.Context) error {
	l.closed.Store(true)
	return l.jan.close(ctx)
}
