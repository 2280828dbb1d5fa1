// Package flush is the one flush engine of distkit's Lax primitives
// (counter.Lax and instancecounter.Lax): per-key
// pending deltas accepted lock-free in process and sent to the backend in
// numbered, exactly-once batches.
//
// What it guarantees, whatever the primitive:
//
//   - Costs follow the work. An entry joins a dirty set on the transition
//     from "nothing to send" to "something to send" (the only time the hot
//     path writes anything beyond its own counter), and a flush touches
//     only the entries of that set: one pending key among a million idle
//     ones costs what one key costs.
//   - Exactly once. Each batch carries a sequence number; a batch whose
//     outcome is unknown (ErrIndeterminate) stays in flight and is resent,
//     with the same number and items, before anything else, until a resend
//     is answered: a resend that fails, even one the server refused before
//     running it (ErrNotApplied), says nothing about the first send, so the
//     batch is never rebuilt as a new one. The primitive's script applies a
//     number at most once (a per-instance marker).
//   - Per-key isolation. The primitive's Send reports each item as applied,
//     refused (a per-key error: the key is set aside, reported by Failed
//     and the *Error of Flush and Close, and retried with its own backoff
//     until its cause goes away) or not sent (tried again normally). One
//     bad key never blocks the others.
//   - Check, then publish. Accept publishes a delta with one compare-and-
//     swap after the caller validated it: the flusher never sees a delta
//     that is later taken back.
//   - Bounded memory. Entries with nothing pending and no use for
//     IdleAfter are evicted by an incremental sweep (a slice of the index
//     per tick, so a full pass takes IdleAfter/2); Drop removes one at
//     once (Del), DropIdle all idle ones (Clear). The index shrinks with
//     them.
//   - Nothing waits for I/O that should not. The engine's mutex is never
//     held across I/O: Pending and Failed answer at once during an outage.
//     One batch is in flight at a time (a token, acquired within the
//     caller's context); Flush and Close run their I/O in a helper
//     goroutine, so they return when their context ends even if the
//     backend ignores it, reporting the remainder.
//
// The primitive owns its entry state (Entry.X), the script and the
// meaning of a reply: Config.Send turns a Batch into one script call and
// reports per-item outcomes; Config.Applied records, under the engine's
// lock, what the backend returned for an applied item.
//
// # Plugging in a primitive
//
// counter.Lax is the reference. A primitive:
//
//   - keeps in X what its view needs, as "remote as last seen minus Sent"
//     (wrapping), so that the view is base + Added() without reading Sent,
//     which only the engine's lock guards; Applied (and any operation that
//     reads remote values, under Do) sets the base from a reply;
//   - in Inc: e := Lookup(key) (Entry(key, init) when nil), then a loop:
//     n := e.Added(); compute and check the new view and n+delta (both
//     must stay in range; when only n+delta would not, Retire e and
//     continue on a fresh entry seeded with the view); Accept(e, n, n+delta);
//   - writes a flush script that applies a batch number at most once, each
//     item on its own, replying per item with the new value or a refusal,
//     and that remembers refused items in its marker so that a resend
//     reports them again (see internal/counterscript.Flush);
//   - runs operations that read or overwrite remote values through Do:
//     Resolve for plain reads, FlushFirst for the rest; after an
//     overwrite, SupersedeLocked drops a refused delta of the key;
//   - exposes Pending, Failed, Flush and Close (converting *Error to its
//     own error type), calls Start, and registers Orphan as the runtime
//     cleanup of its user-facing value.
package flush

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/distkit-go/distkit/backend"
)

// Defaults of Config.
const (
	DefaultMaxBatch   = 1024
	DefaultMaxBackoff = time.Second
	DefaultBudget     = 2 * time.Second
	// DefaultIdleAfter is how long an entry with nothing pending is kept
	// after its last use.
	DefaultIdleAfter = time.Minute
	orphanBudget     = 5 * time.Second
	dirtyShards      = 32
	sweepSteps       = 64 // a full pass over the index takes this many steps
)

// Entry state values.
const (
	stateLinked   = 0 // in the index
	stateUnlinked = 1 // evicted, dropped or retired: lookups no longer find it
)

// Entry is one key's local state. The engine owns the delta bookkeeping;
// X belongs to the primitive (for example the remote value last seen).
type Entry[T any] struct {
	// What Inc touches comes first, so that it shares one cache line with
	// the start of X (where a primitive keeps what its view needs). It is
	// the first field: the address cache keeps *head pointers to entries.
	head

	// X is the primitive's state of the key.
	X T

	hash    uint64
	lastUse atomic.Int64 // engine clock (ns since the engine started)

	// Guarded by Engine.mu.
	sent    int64 // the part of added the backend applied
	err     error // why the backend refused the key's last item; nil when healthy
	retryAt int64 // engine clock: when a refused key is tried again
	refused int64 // engine clock: when the key was last refused
	backoff time.Duration
}

// head is the part of an Entry that does not depend on T.
type head struct {
	added  atomic.Int64  // sum of the deltas accepted since the entry was created; never wraps
	queued atomic.Uint32 // 1 while the entry is in the dirty set or the working set
	state  atomic.Uint32 // stateLinked or stateUnlinked
	key    string
}

// Key returns the entry's key.
func (e *Entry[T]) Key() string { return e.key }

// Added returns the sum of the deltas accepted for the entry. Pass it to
// Engine.Accept as old.
func (e *Entry[T]) Added() int64 { return e.added.Load() }

// Unlinked reports whether the entry has left the index (evicted, dropped
// or retired); a delta accepted on it is still flushed.
func (e *Entry[T]) Unlinked() bool { return e.state.Load() != stateLinked }

// Sent returns the part of the accepted deltas the backend applied. Call
// it with the engine's lock held (in WithLock, Applied or Send's results).
func (e *Entry[T]) Sent() int64 { return e.sent }

// Err returns why the backend refused the key's last item, or nil. Call it
// with the engine's lock held.
func (e *Entry[T]) Err() error { return e.err }

// pending is added - sent, exactly, as a (possibly out of int64) value
// split into a clamped part and whether there is more.
func (e *Entry[T]) pending() (d int64, more bool) {
	a, s := e.added.Load(), e.sent
	d = a - s
	if (s < 0 && d < a) || (s > 0 && d > a) { // a - s left the int64 range
		if s < 0 {
			return math.MaxInt64, true
		}
		return math.MinInt64, true
	}
	return d, false
}

// Item is one key's delta in a batch.
type Item[T any] struct {
	E     *Entry[T]
	Delta int64
	// Outcome, set by Config.Send when it returns nil: Applied, or refused
	// with Err (a per-key error: the key is set aside and retried with
	// backoff), or neither (not applied, tried again normally).
	Applied bool
	Err     error
}

// Batch is one exactly-once flush: Seq is unique per engine and
// increasing; a batch with an unknown outcome is sent again as is.
type Batch[T any] struct {
	Seq   int64
	Items []Item[T]
	// Ext is the primitive's per-batch data (encoded arguments, parsed
	// replies), kept across resends.
	Ext any
}

// Config is what a primitive gives the engine.
type Config[T any] struct {
	// Interval is the background flush period (AllowedLag, FlushInterval).
	Interval time.Duration
	// IdleAfter: an entry with nothing pending, unused for this long, is
	// evicted; default DefaultIdleAfter.
	IdleAfter time.Duration
	// MaxBatch caps the items of one batch (one script call); default
	// DefaultMaxBatch.
	MaxBatch int
	// MaxBackoff caps the backoff after failed flushes and of refused keys;
	// default DefaultMaxBackoff.
	MaxBackoff time.Duration
	// Budget bounds one background flush round; default
	// max(DefaultBudget, 5×Interval).
	Budget time.Duration
	// Send applies b with one script call, at most once per b.Seq. It is
	// called without the engine's lock, one batch at a time. On success it
	// sets every item's outcome and returns nil (an item neither applied
	// nor refused is sent again, in a later batch). An error is about the
	// whole batch: one matching backend.ErrIndeterminate keeps b in flight
	// (resent before anything else); any other means this attempt applied
	// nothing. A batch in flight leaves it only through a nil return: its
	// resend's answer, read from the script's exactly-once marker, is the
	// only proof of what an earlier send did (an item neither applied nor
	// refused there is one the first send never applied).
	Send func(ctx context.Context, b *Batch[T]) error
	// Applied records, with the engine's lock held, what the backend
	// returned for the applied item b.Items[i]; the item's delta already
	// counts in its entry's Sent.
	Applied func(b *Batch[T], i int)
	// CanEvict may veto the eviction of an idle entry (nil: always evict).
	// Called with the index lock held: no I/O, no engine calls.
	CanEvict func(e *Entry[T]) bool
}

// dirtyShard is one shard of the dirty set: the entries that joined it
// since the last drain. A slice, not a linked list, so that the flusher
// reads the entries with independent loads (overlapping their cache
// misses) rather than chasing pointers one miss after another.
type dirtyShard[T any] struct {
	mu    sync.Mutex
	es    []*Entry[T]
	spare []*Entry[T] // the drained buffer, reused (guarded by Engine.mu)
	_     [64]byte
}

// Engine is one primitive instance's flush engine.
type Engine[T any] struct {
	cfg    Config[T]
	ix     index[T]
	dirty  [dirtyShards]dirtyShard[T]
	closed atomic.Bool
	start  time.Time

	tok chan struct{} // one holder at a time: the batch in flight and flush-first operations

	mu       sync.Mutex // never held across I/O
	seq      int64
	inflight *Batch[T]   // sent with an unknown outcome: resend before anything else
	work     []*Entry[T] // entries taken from the dirty sets, until nothing is pending
	lastErr  error       // the last batch-level error, for reports
	again    bool        // the last round left something to send at once: an amount beyond int64, an item not sent (token holder only)
	since    int64       // Flush's start: a round with all retries the keys refused before it (token holder only)
	decided  int64       // items applied or refused so far
	spare    *Batch[T]   // a finished batch, reused by the next one (with its Ext)
	workHigh int         // high-water mark of the working set's length…
	highAt   int64       // …set at this engine time

	sweepAt  int64 // engine clock: next sweep step
	sweepPos int

	base     context.Context // background I/O runs under it; Close cancels it
	cancel   context.CancelFunc
	stop     chan struct{}
	orphaned chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	orphOnce sync.Once
}

// New returns an engine; Start starts its background goroutine.
func New[T any](cfg Config[T]) *Engine[T] {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.IdleAfter <= 0 {
		cfg.IdleAfter = DefaultIdleAfter
	}
	if cfg.Budget <= 0 {
		cfg.Budget = max(DefaultBudget, 5*cfg.Interval)
	}
	g := &Engine[T]{
		cfg: cfg, start: time.Now(), tok: make(chan struct{}, 1),
		stop: make(chan struct{}), orphaned: make(chan struct{}), done: make(chan struct{}),
	}
	g.ix.init()
	g.base, g.cancel = context.WithCancel(context.Background())
	g.sweepAt = int64(g.sweepEvery())
	return g
}

// Start starts the background goroutine: a flush round every Interval
// (backing off while the backend fails) and a sweep step for idle
// entries. It holds no reference to the primitive's user-facing value, so
// that value can be collected; register Orphan as its runtime cleanup.
func (g *Engine[T]) Start() { go g.loop() }

// now is the engine clock: nanoseconds since New (monotonic).
func (g *Engine[T]) now() int64 { return int64(time.Since(g.start)) }

// Closed reports whether Close (or an orphaned owner) stopped the engine.
func (g *Engine[T]) Closed() bool { return g.closed.Load() }

// Cached returns key's entry if the address cache has it for this very
// string (a call site passing the same string again), else nil; small
// enough to be inlined. Lookup does the rest.
func (g *Engine[T]) Cached(key string) *Entry[T] {
	return (*Entry[T])(unsafe.Pointer(g.ix.cache.get(key))) // head is an Entry[T]'s first field
}

// Lookup returns key's entry, or nil: lock-free, no allocation.
func (g *Engine[T]) Lookup(key string) *Entry[T] {
	if h := g.ix.cache.get(key); h != nil {
		return (*Entry[T])(unsafe.Pointer(h)) // head is an Entry[T]'s first field
	}
	return g.ix.lookupMiss(key)
}

// Entry returns key's entry, creating it when absent; init sets up a new
// entry's X before anyone else can see it. A new entry counts as used now.
func (g *Engine[T]) Entry(key string, init func(e *Entry[T])) *Entry[T] {
	if e := g.Lookup(key); e != nil {
		return e
	}
	now := g.now()
	return g.ix.loadOrStore(key, func(e *Entry[T]) {
		e.lastUse.Store(now)
		if init != nil {
			init(e)
		}
	})
}

// Touch marks e as used now (eviction counts from its last use).
func (g *Engine[T]) Touch(e *Entry[T]) { e.lastUse.Store(g.now()) }

// Accept publishes e's new sum of accepted deltas, if it is still old: the
// compare-and-swap of a check-then-publish loop. The caller validated new
// (range, view) against old before calling; on false it reloads and
// checks again. On the entry's first pending delta since its last flush,
// Accept adds it to the dirty set. (A hot path may use its two halves,
// Entry.TryAdd and Engine.Dirty, which the compiler inlines.)
func (g *Engine[T]) Accept(e *Entry[T], old, new int64) bool {
	ok, dirty := e.TryAdd(old, new)
	if dirty {
		g.Dirty(e)
	}
	return ok
}

// TryAdd publishes new as e's sum of accepted deltas if it is still old.
// dirty reports that e has to join the dirty set: pass it to
// Engine.Dirty.
func (e *Entry[T]) TryAdd(old, new int64) (ok, dirty bool) {
	ok = e.added.CompareAndSwap(old, new)
	return ok, ok && e.queued.Load() == 0
}

// Dirty adds e to the dirty set, unless it is there already.
func (g *Engine[T]) Dirty(e *Entry[T]) { g.enqueue(e) }

func (g *Engine[T]) enqueue(e *Entry[T]) {
	if !e.queued.CompareAndSwap(0, 1) {
		return
	}
	d := &g.dirty[e.hash>>58%dirtyShards]
	d.mu.Lock()
	d.es = append(d.es, e)
	d.mu.Unlock()
}

// Retire unlinks e from the index while it may still have pending deltas
// (they are flushed as usual); the next Entry call for its key creates a
// fresh entry. A primitive retires an entry whose sum of accepted deltas
// would leave the int64 range.
func (g *Engine[T]) Retire(e *Entry[T]) { g.ix.remove(e, func(*Entry[T]) bool { return true }) }

// Drop unlinks e if nothing is pending on it (Del): its memory goes; a
// later use starts a new entry.
func (g *Engine[T]) Drop(e *Entry[T]) {
	g.ix.remove(e, func(e *Entry[T]) bool { return e.queued.Load() == 0 })
}

// DropIdle unlinks every entry with nothing pending (Clear).
func (g *Engine[T]) DropIdle() {
	g.ix.sweep(0, math.MaxInt, func(e *Entry[T]) bool { return e.queued.Load() == 0 })
}

// Len returns how many entries the index holds.
func (g *Engine[T]) Len() int { return g.ix.len() }

// WithLock runs f with the engine's lock held: f may read Sent and Err and
// call the ...Locked methods; it must not do I/O.
func (g *Engine[T]) WithLock(f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f()
}

// EachLocked calls f for every entry of the index and of the working set
// (an entry may come twice). Call it from WithLock.
func (g *Engine[T]) EachLocked(f func(e *Entry[T])) {
	g.ix.each(f)
	for _, e := range g.work {
		f(e)
	}
	g.eachDirty(f)
}

func (g *Engine[T]) eachDirty(f func(e *Entry[T])) {
	for i := range g.dirty {
		d := &g.dirty[i]
		d.mu.Lock()
		for _, e := range d.es {
			f(e)
		}
		d.mu.Unlock()
	}
}

// SupersedeLocked drops e's pending deltas if the backend refused them
// (the key was overwritten, as flushing first would have done): they count
// as sent and the key is healthy again. Call it from WithLock after an
// operation that overwrote the key.
func (g *Engine[T]) SupersedeLocked(e *Entry[T]) {
	if e.err != nil {
		e.sent = e.added.Load()
		e.err, e.backoff, e.retryAt = nil, 0, 0
	}
}

// SupersedeKeyLocked is SupersedeLocked for every entry of key: the
// current one and any retired or evicted one whose refused delta is still
// pending (refused entries stay in the working set). Call it from
// WithLock after an operation that overwrote the key.
func (g *Engine[T]) SupersedeKeyLocked(key string) {
	for _, e := range g.work {
		if e.key == key {
			g.SupersedeLocked(e)
		}
	}
	if e := g.Lookup(key); e != nil {
		g.SupersedeLocked(e)
	}
}

// RefusedLocked returns why the backend refused a pending delta of key
// (held by its current entry or by a retired or evicted one), or nil.
// Call it from WithLock.
func (g *Engine[T]) RefusedLocked(key string) error {
	for _, e := range g.work {
		if e.key == key && e.err != nil && e.added.Load() != e.sent {
			return e.err
		}
	}
	return nil
}

// PendingKey reports whether any entry of key (the current one, or one
// retired or evicted with deltas still pending) has deltas the backend
// has not applied. It does no I/O; when the current entry has nothing
// pending it walks the working set (the entries with deltas since the
// last flush that settled them).
func (g *Engine[T]) PendingKey(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	pending := func(e *Entry[T]) bool { d, more := e.pending(); return d != 0 || more }
	if e := g.Lookup(key); e != nil && pending(e) {
		return true
	}
	for _, e := range g.work {
		if e.key == key && pending(e) {
			return true
		}
	}
	d := &g.dirty[g.ix.hash(key)>>58%dirtyShards]
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range d.es {
		if e.key == key && pending(e) {
			return true
		}
	}
	return false
}

// Pending returns, per key, the deltas accepted but not yet applied by
// the backend (saturated to the int64 range). It does no I/O and never
// waits for any.
func (g *Engine[T]) Pending() map[string]int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pendingLocked()
}

func (g *Engine[T]) pendingLocked() map[string]int64 {
	out := map[string]int64{}
	seen := map[*Entry[T]]bool{}
	add := func(e *Entry[T]) {
		if seen[e] {
			return
		}
		seen[e] = true
		d, _ := e.pending() // an amount beyond int64 comes clamped: the sum saturates
		if d == 0 {
			return
		}
		s, ok := out[e.key]
		switch {
		case !ok:
			out[e.key] = d
		case d > 0 && s > math.MaxInt64-d:
			out[e.key] = math.MaxInt64
		case d < 0 && s < math.MinInt64-d:
			out[e.key] = math.MinInt64
		default:
			out[e.key] = s + d
		}
		if out[e.key] == 0 {
			delete(out, e.key)
		}
	}
	for _, e := range g.work {
		add(e)
	}
	g.eachDirty(add)
	return out
}

// Failed returns the keys whose pending deltas the backend refused, with
// the reason. It does no I/O.
func (g *Engine[T]) Failed() map[string]error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failedLocked()
}

func (g *Engine[T]) failedLocked() map[string]error {
	out := map[string]error{}
	for _, e := range g.work {
		if e.err != nil && e.added.Load() != e.sent {
			out[e.key] = e.err
		}
	}
	return out
}

// Error reports what a flush left behind.
type Error struct {
	// Pending: key → delta accepted but not applied by the backend.
	Pending map[string]int64
	// Failed: keys the backend refused, with the reason (a subset of
	// Pending's keys).
	Failed map[string]error
	// Err: why the rest was not flushed (backend error, context), or nil
	// when only Failed keys remain.
	Err error
}

// Error lists up to ten unflushed keys with their deltas (and the reason
// of refused ones), then Err.
func (e *Error) Error() string {
	keys := make([]string, 0, len(e.Pending))
	for k := range e.Pending {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d keys unflushed (", len(keys))
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		if i == 10 {
			fmt.Fprintf(&b, "… %d more", len(keys)-10)
			break
		}
		fmt.Fprintf(&b, "%q: %+d", k, e.Pending[k])
		if err := e.Failed[k]; err != nil {
			fmt.Fprintf(&b, " refused: %v", err)
		}
	}
	b.WriteString(")")
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap returns Err and every Failed error.
func (e *Error) Unwrap() []error {
	out := make([]error, 0, 1+len(e.Failed))
	if e.Err != nil {
		out = append(out, e.Err)
	}
	keys := make([]string, 0, len(e.Failed))
	for k := range e.Failed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, e.Failed[k])
	}
	return out
}

// report builds the error for what is left: nil when the flush succeeded
// and no key was refused (deltas accepted after it began do not count).
func (g *Engine[T]) report(err error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil && !g.anyFailedLocked() {
		return nil
	}
	p := g.pendingLocked()
	if len(p) == 0 && err == nil {
		return nil
	}
	return &Error{Pending: p, Failed: g.failedLocked(), Err: err}
}

func (g *Engine[T]) anyFailedLocked() bool {
	for _, e := range g.work {
		if e.err != nil && e.added.Load() != e.sent {
			return true
		}
	}
	return false
}

// acquire takes the token within ctx.
func (g *Engine[T]) acquire(ctx context.Context) error {
	select {
	case g.tok <- struct{}{}:
		return nil
	default:
	}
	select {
	case g.tok <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *Engine[T]) release() { <-g.tok }

// Mode says what Do does before running its function.
type Mode int

const (
	// Resolve resends a batch with an unknown outcome, if any, so that the
	// remote values the function reads include exactly the applied deltas.
	Resolve Mode = iota
	// FlushFirst also sends every pending delta (keys set aside by a
	// per-key error are tried only when their backoff has passed).
	FlushFirst
)

// Do runs f with the token held (no batch in flight meanwhile), after
// resolving or flushing as mode says. It fails without running f when
// that fails, or when ctx ends while waiting for the token or for that
// I/O (which runs in a helper goroutine, as Flush's does, so that Do
// returns when ctx ends even if the backend ignores it); per-key
// refusals do not fail it (see Entry.Err). f runs in the caller's
// goroutine, with its context.
//
// f's context marks the token as held: a Do called with it (from f) runs
// at once, without waiting for the token its caller holds.
func (g *Engine[T]) Do(ctx context.Context, mode Mode, f func(ctx context.Context) error) error {
	prep := func() error {
		if mode == FlushFirst {
			return g.rounds(ctx, false)
		}
		return g.resolve(ctx)
	}
	if ctx.Value(heldKey[T]{g}) != nil { // from an outer Do's f: the token is ours already
		if err := prep(); err != nil {
			return err
		}
		return f(ctx)
	}
	if err := g.acquire(ctx); err != nil {
		return err
	}
	fctx := context.WithValue(ctx, heldKey[T]{g}, true)
	if ctx.Done() == nil || (mode == Resolve && !g.inflightNow()) {
		defer g.release() // nothing that could hang, or a context that never ends
		if err := prep(); err != nil {
			return err
		}
		return f(fctx)
	}
	// Whoever comes second gives the token back: the caller after f, or
	// the helper when the caller left at ctx end.
	var (
		mu                  sync.Mutex
		finished, abandoned bool
	)
	res := make(chan error, 1)
	go func() {
		err := prep()
		mu.Lock()
		finished = true
		gone := abandoned
		mu.Unlock()
		if gone {
			g.release()
			return
		}
		res <- err
	}()
	select {
	case err := <-res:
		defer g.release()
		if err != nil {
			return err
		}
		return f(fctx)
	case <-ctx.Done():
		mu.Lock()
		done := finished
		abandoned = !done
		mu.Unlock()
		if done { // the helper finished first: the token is ours
			err := <-res
			g.release()
			if err != nil {
				return err
			}
		}
		return ctx.Err()
	}
}

// heldKey marks the context Do gives its function: that engine's token is
// held.
type heldKey[T any] struct{ g *Engine[T] }

// inflightNow reports whether a batch is in flight.
func (g *Engine[T]) inflightNow() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inflight != nil
}

// Flush sends every pending delta, keys set aside included, and waits for
// the outcome within ctx. It returns nil, or an *Error listing what is
// left: refused keys, or everything when a batch failed or ctx ended. The
// I/O runs in a helper goroutine holding the token, so Flush returns when
// ctx ends even if the backend ignores it; the batch then stays in flight
// and is resolved by the next flush.
func (g *Engine[T]) Flush(ctx context.Context) error {
	return g.report(g.flushAll(ctx))
}

func (g *Engine[T]) flushAll(ctx context.Context) error {
	if err := g.acquire(ctx); err != nil {
		return err
	}
	run := func() error {
		defer g.release()
		g.since = g.now()
		return g.rounds(ctx, true)
	}
	if ctx.Done() == nil {
		return run() // a context that never ends: nothing to return early for
	}
	res := make(chan error, 1)
	go func() { res <- run() }()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// rounds runs rounds: again for the rest of an amount beyond int64, or
// items the backend skipped (batched with a key it refused: that one is
// not retried by this call), as long as rounds make progress, so that
// every delta accepted before the call is sent. Called with the token.
func (g *Engine[T]) rounds(ctx context.Context, all bool) error {
	err := g.round(ctx, all)
	for err == nil && g.again {
		before := g.decided
		if err = g.round(ctx, all); g.decided == before {
			break
		}
	}
	return err
}

// resolve resends the batch in flight, if any. Called with the token.
func (g *Engine[T]) resolve(ctx context.Context) error {
	g.mu.Lock()
	b := g.inflight
	g.mu.Unlock()
	if b == nil {
		return nil
	}
	return g.send(ctx, b)
}

// round resolves the batch in flight, then sends, in batches of MaxBatch,
// every entry of the working set with something pending (all: keys
// refused before g.since too, whatever their backoff; a key refused during
// this Flush is not tried again by it: with a primitive whose script
// applies a batch all or nothing, it would hold back the keys batched
// with it). It stops at the first batch-level error. Called with the
// token.
func (g *Engine[T]) round(ctx context.Context, all bool) error {
	if err := g.resolve(ctx); err != nil {
		return err
	}
	g.mu.Lock()
	g.drainLocked()
	n := len(g.work)
	g.mu.Unlock()
	g.again = false
	for pos := 0; pos < n; {
		g.mu.Lock()
		b, next := g.buildLocked(pos, n, all)
		g.mu.Unlock()
		pos = next
		if b == nil {
			break
		}
		if err := g.send(ctx, b); err != nil {
			return err
		}
	}
	g.mu.Lock()
	g.compactLocked()
	g.mu.Unlock()
	return nil
}

// drainLocked moves the dirty set into the working set, in the order the
// entries joined it (the entries of one key share a shard, so their deltas
// keep the order in which they were accepted).
func (g *Engine[T]) drainLocked() {
	for i := range g.dirty {
		d := &g.dirty[i]
		d.mu.Lock()
		es := d.es
		d.es, d.spare = d.spare[:0], nil
		d.mu.Unlock()
		g.work = append(g.work, es...)
		clear(es)
		if cap(es) > 256 && len(es) < cap(es)/4 {
			es = nil // a past burst's buffer: let it go
		}
		d.spare = es[:0]
	}
}

// buildLocked makes a batch from work[pos:n]; it returns the batch (nil
// when nothing there is to send) and where the next one starts.
func (g *Engine[T]) buildLocked(pos, n int, all bool) (*Batch[T], int) {
	now := g.now()
	var b *Batch[T]
	for ; pos < n; pos++ {
		e := g.work[pos]
		d, more := e.pending()
		if d == 0 || (e.err != nil && ((!all && now < e.retryAt) || (all && e.refused >= g.since))) {
			continue
		}
		g.again = g.again || more
		if b == nil {
			g.seq++
			if b, g.spare = g.spare, nil; b == nil {
				b = &Batch[T]{Items: make([]Item[T], 0, min(n-pos, g.cfg.MaxBatch))}
			}
			b.Seq = g.seq
		}
		b.Items = append(b.Items, Item[T]{E: e, Delta: d})
		if len(b.Items) == g.cfg.MaxBatch {
			pos++
			break
		}
	}
	return b, pos
}

// compactLocked takes entries with nothing pending out of the working
// set; they rejoin through the dirty set on their next delta.
func (g *Engine[T]) compactLocked() {
	now := g.now()
	kept := g.work[:0]
	for _, e := range g.work {
		if e.added.Load() != e.sent {
			kept = append(kept, e)
			continue
		}
		if e.err != nil {
			e.err, e.backoff, e.retryAt = nil, 0, 0
		}
		e.lastUse.Store(now)
		e.queued.Store(0)
		// A delta accepted just now saw queued == 1 and did not enqueue:
		// keep the entry, unless that Inc's enqueue won the race.
		if e.added.Load() != e.sent && e.queued.CompareAndSwap(0, 1) {
			kept = append(kept, e)
		}
	}
	clear(g.work[len(kept):])
	// Keep the capacity steady flushing needs (no regrowth every round);
	// let a burst's backing array go once no round needed it for a while.
	if len(g.work) >= g.workHigh || now-g.highAt > int64(min(max(time.Second, 50*g.cfg.Interval), 5*time.Second)) {
		g.workHigh, g.highAt = len(g.work), now
	}
	g.work = kept
	if cap(g.work) > 1024 && cap(g.work) > 4*g.workHigh {
		g.work = append(make([]*Entry[T], 0, 2*g.workHigh), g.work...)
	}
}

// send runs one batch and records its outcome. Called with the token.
func (g *Engine[T]) send(ctx context.Context, b *Batch[T]) error {
	for i := range b.Items {
		b.Items[i].Applied, b.Items[i].Err = false, nil
	}
	err := g.cfg.Send(ctx, b)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		g.lastErr = err
		switch {
		case errors.Is(err, backend.ErrIndeterminate):
			g.inflight = b
		case g.inflight == b:
			// A resend that failed (refused before running: connection
			// refused, LOADING after a restart; or any other error) says
			// nothing about the earlier send whose outcome is unknown: b
			// stays in flight, to be resent with its number until an
			// answer says what became of it. Rebuilding its deltas as a
			// new batch could apply them twice.
		default:
			g.recycleLocked(b) // a new batch, not applied: its deltas are still pending
		}
		return err
	}
	g.inflight, g.lastErr = nil, nil
	defer g.recycleLocked(b)
	now := g.now()
	for i := range b.Items {
		it := &b.Items[i]
		e := it.E
		switch {
		case it.Applied:
			g.decided++
			e.sent += it.Delta
			if e.err != nil {
				e.err, e.backoff, e.retryAt = nil, 0, 0
			}
			g.cfg.Applied(b, i)
		case it.Err != nil:
			g.decided++
			e.err = it.Err
			e.backoff = min(max(2*e.backoff, g.cfg.Interval), g.cfg.MaxBackoff)
			e.retryAt, e.refused = now+int64(e.backoff), now
		default:
			g.again = true
		}
	}
	return nil
}

// recycleLocked keeps a finished batch for the next one, so that steady
// flushing allocates little beyond what the backend needs. Its items are
// cleared: a spare batch must not keep evicted entries alive.
func (g *Engine[T]) recycleLocked(b *Batch[T]) {
	clear(b.Items)
	b.Items = b.Items[:0]
	g.spare = b
}

// loop is the background goroutine.
func (g *Engine[T]) loop() {
	defer close(g.done)
	delay := g.cfg.Interval
	flushAt := g.now() + int64(delay)
	t := time.NewTimer(time.Duration(min(flushAt, g.sweepAt) - g.now()))
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-g.orphaned:
			select {
			case <-g.stop: // Close began (and settles) before the owner was collected
				return
			default:
			}
			g.closed.Store(true)
			ctx, cancel := context.WithTimeout(context.Background(), orphanBudget)
			g.settle(ctx)
			cancel()
			return
		case <-t.C:
		}
		if g.now() >= flushAt {
			var err error
			select {
			case g.tok <- struct{}{}: // skip the round if someone else is flushing
				ctx, cancel := context.WithTimeout(g.base, g.cfg.Budget)
				err = g.round(ctx, false)
				cancel()
				g.release()
			default:
			}
			if err != nil {
				delay = min(2*delay, g.cfg.MaxBackoff)
				delay += rand.N(delay/4 + 1) // jitter spreads the retries of many instances
			} else {
				delay = g.cfg.Interval
			}
			flushAt = g.now() + int64(delay)
		}
		g.sweep() // on its own schedule, whatever the flush interval
		t.Reset(time.Duration(max(min(flushAt, g.sweepAt)-g.now(), 0)))
	}
}

func (g *Engine[T]) sweepEvery() time.Duration { return max(g.cfg.IdleAfter/2/sweepSteps, 1) }

// sweep runs the sweep steps that are due: each unlinks the idle entries
// of 1/sweepSteps of the index.
func (g *Engine[T]) sweep() {
	now := g.now()
	idle := int64(g.cfg.IdleAfter)
	drop := func(e *Entry[T]) bool {
		return e.queued.Load() == 0 && now-e.lastUse.Load() >= idle && (g.cfg.CanEvict == nil || g.cfg.CanEvict(e))
	}
	for steps := 0; now >= g.sweepAt && steps < sweepSteps; steps++ {
		size := len(g.ix.table.Load().slots)
		step := (size + sweepSteps - 1) / sweepSteps
		size = g.ix.sweep(g.sweepPos, g.sweepPos+step, drop)
		g.sweepPos += step
		if g.sweepPos >= size {
			g.sweepPos = 0
		}
		g.sweepAt += int64(g.sweepEvery())
	}
	if now >= g.sweepAt { // far behind (a long backoff): do not catch up in a burst
		g.sweepAt = now + int64(g.sweepEvery())
	}
}

// Orphan is the runtime cleanup of the primitive's user-facing value: the
// background goroutine does a final flush (bounded) and exits.
func (g *Engine[T]) Orphan() { g.orphOnce.Do(func() { close(g.orphaned) }) }

// settle flushes until nothing is pending or ctx ends, backing off between
// failed rounds. It returns nil only when everything was flushed; refused
// keys end it at once (retrying would not help).
func (g *Engine[T]) settle(ctx context.Context) error {
	delay := g.cfg.Interval
	for {
		err := g.flushAll(ctx)
		if err == nil {
			return g.report(nil)
		}
		if ctx.Err() != nil {
			return g.report(g.withLast(ctx.Err()))
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return g.report(g.withLast(ctx.Err()))
		case <-t.C:
		}
		delay = min(2*delay, g.cfg.MaxBackoff)
	}
}

// withLast joins err with the last batch-level error seen, if any.
func (g *Engine[T]) withLast(err error) error {
	g.mu.Lock()
	last := g.lastErr
	g.mu.Unlock()
	if last == nil || errors.Is(err, last) {
		return err
	}
	return fmt.Errorf("%w (last flush error: %w)", err, last)
}

// Close stops the background goroutine (cancelling its I/O), then flushes
// everything, retrying until ctx ends. It returns nil only when every
// accepted delta was applied; otherwise an *Error with the remainder. It
// returns when ctx ends, whatever the backend does; it may be called again
// to retry.
func (g *Engine[T]) Close(ctx context.Context) error {
	g.closed.Store(true)
	g.stopOnce.Do(func() {
		close(g.stop)
		g.cancel()
	})
	select {
	case <-g.done:
	case <-ctx.Done():
		return g.report(g.withLast(ctx.Err()))
	}
	return g.settle(ctx)
}
